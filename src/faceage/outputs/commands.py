"""``faceage info FILE...``: show the provenance faceage wrote into output images."""

from __future__ import annotations

import json
import re

import click

from faceage.cli_options import report_failures, run_per_file

# Readable names for the fields ``provenance_metadata`` writes, in the order they are shown; other
# fields (a caller's ``extra``) follow under their own key.
_FIELDS = {
    "faceage:method": "method",
    "faceage:weights_sha256": "weights sha256",
    "faceage:source_ages": "source age(s)",
    "faceage:target_age": "target age(s)",
    "xmp:CreateDate": "created (UTC)",
    "Iptc4xmpExt:DigitalSourceType": "IPTC source type",
    "dc:description": "description",
    "faceage:method_info": "method info",
}
_HEADLINE = {"faceage:synthetic", "faceage:version", "xmp:CreatorTool"}
# control characters (newlines, terminal escape sequences) in a file's metadata are shown escaped
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def _read(path: str) -> dict:
    from faceage.outputs.provenance import read_provenance

    return {"file": path, "provenance": read_provenance(path)}


def _describe(file: str, meta: dict[str, str]) -> list[str]:
    if not meta:
        return [f"{file}: no faceage provenance (not made by faceage, or its metadata was removed)"]
    synthetic = "synthetic (AI-altered) image" if meta.get("faceage:synthetic") == "true" else "image"
    version = meta.get("faceage:version")
    lines = [f"{file}: {synthetic} made by faceage{' ' + _printable(version) if version else ''}"]
    rows = [(label, meta[key]) for key, label in _FIELDS.items() if key in meta]
    rows += [(key, value) for key, value in meta.items() if key not in _FIELDS and key not in _HEADLINE]
    width = max((len(label) for label, _ in rows), default=0)
    lines += [f"  {_printable(label) + ':':<{width + 1}} {_printable(value)}" for label, value in rows]
    return lines


@click.command("info")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def info(files: tuple[str, ...], as_json: bool) -> None:
    """Show the provenance faceage wrote into each FILE (PNG, JPEG, WebP, GIF): that it is AI-altered,
    the faceage version, method, source and target ages, and when it was made."""

    results, failures = run_per_file(files, _read)
    if as_json:
        payload = {"results": results, "failures": [failure.__dict__ for failure in failures]}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        for result in results:
            for line in _describe(result["file"], result["provenance"]):
                click.echo(line)
    report_failures(failures, len(files))
