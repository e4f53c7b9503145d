from soarlite.cli import main

main()
