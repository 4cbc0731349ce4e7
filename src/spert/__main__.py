from spert.cli import main

main()
