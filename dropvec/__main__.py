from dropvec.cli import main

main()
