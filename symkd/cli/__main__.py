from symkd.cli import main

main()
