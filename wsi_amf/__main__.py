from wsi_amf.cli import main

main(prog_name="wsi-amf")
