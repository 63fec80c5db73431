from fipo_cli.cli import main

main()
