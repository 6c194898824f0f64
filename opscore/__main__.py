from .cli import main

if __name__ == "__main__":  # not when a spawned process (OPSCORE_PROCESSES) imports it
    main()
