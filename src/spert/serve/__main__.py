from spert.serve.cli import main

main()
