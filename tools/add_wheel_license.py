#!/usr/bin/env python
"""Add the license of a runtime library vendored into a wheel (libgomp, libomp) to the wheel: its
text as ``<name>.dist-info/licenses/<as>``, listed in METADATA as a License-File; its SPDX
expression joined to METADATA's License-Expression with AND; RECORD regenerated.

    python tools/add_wheel_license.py WHEEL_OR_FOLDER tools/licenses/libgomp.txt \
        --as softmax_kernels.libs/libgomp-LICENSE --expression "GPL-3.0-or-later WITH GCC-exception-3.1"

A folder means every wheel in it (a repair command's output folder). The standard library only,
so that it runs in any build environment (tools/build_wheels.sh, .github/workflows/wheels.yml).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import stat
import sys
import tempfile
import zipfile


def _record_line(name: str, data: bytes) -> list:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def _header_end(lines: list) -> int:
    """The index of the empty line that ends METADATA's headers (or the number of lines)."""
    return lines.index("") if "" in lines else len(lines)


def _with_license_file(metadata: str, entry: str) -> str:
    """METADATA with `License-File: entry` after its last License-File header (or its last header)."""
    lines = metadata.split("\n")
    header_end = _header_end(lines)
    license_lines = [i for i in range(header_end) if lines[i].startswith("License-File:")]
    position = (license_lines[-1] if license_lines else header_end - 1) + 1
    return "\n".join(lines[:position] + [f"License-File: {entry}"] + lines[position:])


def _with_license_expression(metadata: str, expression: str) -> str:
    """METADATA whose License-Expression also covers `expression`: `ours AND (expression)`."""
    lines = metadata.split("\n")
    header_end = _header_end(lines)
    found = [i for i in range(header_end) if lines[i].startswith("License-Expression:")]
    if len(found) != 1:
        raise SystemExit(f"METADATA has {len(found)} License-Expression headers, expected 1")
    ours = lines[found[0]].split(":", 1)[1].strip()
    lines[found[0]] = f"License-Expression: {ours} AND ({expression})"
    return "\n".join(lines)


def add_license(wheel: str, license_path: str, name: str, expression: str) -> None:
    with open(license_path, "rb") as f:
        license_text = f.read()
    with zipfile.ZipFile(wheel) as source:  # files only: RECORD lists no directories
        infos = [info for info in source.infolist() if not info.is_dir()]
        contents = {info.filename: source.read(info) for info in infos}
    dist_info = next(n.split("/")[0] for n in contents if n.endswith(".dist-info/METADATA"))
    target = f"{dist_info}/licenses/{name}"
    if target in contents:
        raise SystemExit(f"{wheel} already holds {target}")
    record_name = f"{dist_info}/RECORD"
    metadata_name = f"{dist_info}/METADATA"
    metadata = _with_license_file(contents[metadata_name].decode("utf-8"), name)
    contents[metadata_name] = _with_license_expression(metadata, expression).encode("utf-8")
    contents[target] = license_text
    names = [info.filename for info in infos if info.filename != record_name] + [target]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for entry in names:
        writer.writerow(_record_line(entry, contents[entry]))
    writer.writerow([record_name, "", ""])
    contents[record_name] = record.getvalue().encode("utf-8")
    modes = {info.filename: info.external_attr for info in infos}
    # Not named *.whl: a wheel left half-written by a crash must not look like a second wheel.
    handle, temporary = tempfile.mkstemp(suffix=".tmp", dir=os.path.dirname(os.path.abspath(wheel)))
    os.close(handle)
    os.chmod(temporary, stat.S_IMODE(os.stat(wheel).st_mode))
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for entry in names + [record_name]:  # RECORD last, as the wheel specification asks
            info = zipfile.ZipInfo(entry, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = modes.get(entry, (stat.S_IFREG | 0o644) << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, contents[entry])
    os.replace(temporary, wheel)
    print(f"{os.path.basename(wheel)}: added {target} ({len(license_text)} bytes) and {expression}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", help="a wheel, or a folder whose wheels all get the license")
    parser.add_argument("license", help="the license text to add")
    parser.add_argument("--as", dest="name", required=True,
                        help="its path under .dist-info/licenses/, e.g. softmax_kernels.libs/libgomp-LICENSE")
    parser.add_argument("--expression", required=True,
                        help="the library's SPDX license expression, e.g. 'GPL-3.0-or-later WITH GCC-exception-3.1'")
    args = parser.parse_args()
    wheels = ([os.path.join(args.wheel, n) for n in sorted(os.listdir(args.wheel)) if n.endswith(".whl")]
              if os.path.isdir(args.wheel) else [args.wheel])
    if not wheels:
        raise SystemExit(f"no wheel in {args.wheel}")
    for wheel in wheels:
        add_license(wheel, args.license, args.name, args.expression)
    return 0


if __name__ == "__main__":
    sys.exit(main())
