"""Write the HTML template `dvc plots show` renders into, with Vega, Vega-Lite and Vega-Embed inlined.

DVC's default page loads those three libraries from a CDN, so offline it is blank. This template
(`.dvc/plots_template.html`, set as `plots.html_template` in `.dvc/config`) carries the same
versions DVC's renderer asks for, taken from the npm registry with `npm pack`, so the page works
with no network. Rerun it only to change the versions:

    python scripts/dvc_plots_template.py
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The versions dvc_render's Vega renderer loads (dvc_render/vega.py, VegaRenderer.SCRIPTS).
LIBRARIES = (("vega", "5.20.2", "build/vega.min.js"), ("vega-lite", "5.2.0", "build/vega-lite.min.js"),
             ("vega-embed", "6.18.2", "build/vega-embed.min.js"))
PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>selfsup: DVC plots</title>
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def library(name: str, version: str, member: str, folder: Path) -> str:
    """The minified build of ``name@version`` from the npm registry, with its licence header."""
    archive = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=folder, capture_output=True,
                             text=True, check=True).stdout.strip().splitlines()[-1]
    with tarfile.open(folder / archive) as tar:
        code = tar.extractfile(f"package/{member}").read().decode()
        licence = tar.extractfile("package/LICENSE").read().decode()
    comment = "\n".join(f"   {line}" for line in licence.strip().splitlines())
    code = code.replace("</script", "<\\/script")  # the code must not close its own <script> element
    return (f"    <!-- {name} {version} (npm), {member}. Licence:\n{comment}\n    -->\n"
            f"    <script type=\"text/javascript\">\n{code}\n    </script>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / ".dvc" / "plots_template.html")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scripts = "\n".join(library(name, version, member, Path(tmp)) for name, version, member in LIBRARIES)
    args.out.write_text(PAGE.format(scripts=scripts))
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
