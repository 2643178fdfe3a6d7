"""The pbx-config one-shot of docker-compose.yml: before Asterisk starts, render
asterisk-conf/ with the test site and build the prompts, exactly as the native harness does
(``testpbx.asterisk.Asterisk.configure`` and ``ivr.notices.audio.build``), into the volumes
Asterisk and the service share.

The native harness renders into its debootstrapped root; here that root is ``IVR_PBX_ROOT``
(default ``/srv/pbx/root``) with the ``pbx-etc`` volume at its ``etc/`` (the Asterisk image's
``/etc/asterisk`` points at ``etc/asterisk`` in it) and the recordings volume at the
recordings directory. The prompts go to ``prompts.local_dir``, the prompts volume.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from ivr.asterisk.conf import ConfigError
from ivr.cli import explain_settings_error
from ivr.notices.audio import build
from ivr.notices.catalogue import CatalogueError, load_catalogue
from ivr.settings import get_settings
from testpbx.asterisk import Asterisk
from testpbx.paths import Paths


def main() -> int:
    root = Path(os.environ.get("IVR_PBX_ROOT", "/srv/pbx/root"))
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(explain_settings_error(exc), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as state:
        pbx = Asterisk(Paths(cache=root.parent, state=Path(state)), settings)
        if pbx.paths.root != root:
            print(f"pbx-config: IVR_PBX_ROOT must end in /root, not {root}", file=sys.stderr)
            return 2
        try:
            pbx.configure()
            manifest = build(load_catalogue(), settings.prompts.local_dir)
        except (ConfigError, CatalogueError, OSError) as exc:
            print(f"pbx-config: {exc}", file=sys.stderr)
            return 1
    print(f"pbx-config: Asterisk configuration in {root / 'etc/asterisk'}, "
          f"{len(manifest.segments)} prompts in {settings.prompts.local_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
