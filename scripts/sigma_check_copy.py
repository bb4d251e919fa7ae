#!/usr/bin/env python3
"""Copies the pack for sigma-cli, writing the default values of `cidr` placeholders in.

pySigma applies `cidr` only to literal values, so `source.ip|expand|cidr: '%cluster_networks%'`
(tripline expands the placeholder, then reads each value as a network) is a parse error there.
The copy replaces each such condition with `source.ip|cidr: [<the placeholder's defaults>]`,
which is what the rule means with the pack's defaults; everything else is copied unchanged.
Usage: sigma_check_copy.py SRC_DIR DST_DIR
"""
import pathlib
import re
import shutil
import sys

import yaml

src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
placeholders = yaml.safe_load((src / "placeholders.yaml").read_text())
shutil.rmtree(dst, ignore_errors=True)
dst.mkdir(parents=True)
pattern = re.compile(r"\|expand\|cidr: '%(\w+)%'")


def inline(m):
    values = placeholders[m.group(1)]
    return "|cidr: [" + ", ".join(f"'{v}'" for v in values) + "]"


for f in src.glob("*.yml"):
    (dst / f.name).write_text(pattern.sub(inline, f.read_text()))
