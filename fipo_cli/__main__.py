from fipo_cli.cli.app import main

main()
