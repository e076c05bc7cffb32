from ivr.cli import main

main(prog_name="tongdai")
