from srexp.cli.report import main

main()
