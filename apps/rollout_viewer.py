"""DPOT rollout viewer: a model's rollout against the truth, frame by frame.

    panel serve apps/rollout_viewer.py                      # demo checkpoint and demo data
    panel serve apps/rollout_viewer.py --args --checkpoint runs/x/checkpoints/best.pt \
        --data test.h5 --data-dir data/                     # files of data/ offered in the page
"""

import argparse

import panel as pn

from dpot_lab.viz.app import PANEL_OPTIONS, build_app

pn.extension(**PANEL_OPTIONS)  # the app sets Panel up; importing dpot_lab does not

parser = argparse.ArgumentParser(prog="rollout_viewer", description=__doc__.splitlines()[0])
parser.add_argument("--checkpoint", help="a dpot-lab checkpoint (default: the demo model)")
parser.add_argument("--data", help="a data file dl.open_dataset reads (default: the demo data)")
parser.add_argument(
    "--data-dir", help="a folder whose files the page offers; typed paths stay in it"
)
args = parser.parse_args()

build_app(args.checkpoint, args.data, args.data_dir).servable(title="DPOT rollout viewer")
