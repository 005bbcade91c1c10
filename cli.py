#!/usr/bin/env python3
"""Run the wsi-amf command line from a checkout: ``python cli.py screen slide.svs --points det.csv``."""

from wsi_amf.cli import main

if __name__ == "__main__":
    main(prog_name="wsi-amf")
