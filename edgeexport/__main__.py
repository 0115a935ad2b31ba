from edgeexport.cli import main

main()
