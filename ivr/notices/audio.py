"""Build and verify the notice audio: espeak-ng speaks each segment (Slovenian voice),
sox makes it 8 kHz mono 16-bit WAV for Asterisk, and the manifest records its hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

from ivr.notices.catalogue import (
    MANIFEST,
    BuiltSegment,
    Catalogue,
    CatalogueError,
    Manifest,
    dump_manifest,
    load_manifest,
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def wav_duration_ms(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return int(w.getnframes() * 1000 / w.getframerate())


def speak(text: str, target: Path, voice: str = "sl") -> None:
    """Speak ``text`` into ``target`` as 8 kHz mono 16-bit WAV."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise CatalogueError(f"{tool} is not installed (apt-get install {tool})")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(target)],
                       check=True, capture_output=True, timeout=60)


def _current(existing: Manifest | None, segment_id: str, version: int, text: str,
             directory: Path) -> bool:
    if existing is None:
        return False
    for built in existing.segments:
        if built.id == segment_id:
            path = directory / built.file
            return (built.version == version and built.text == text and path.is_file()
                    and sha256_file(path) == built.sha256)
    return False


def build(catalogue: Catalogue, directory: Path, keep_audio: bool = False) -> Manifest:
    """Make every segment's audio current in ``directory`` and write the manifest.

    A segment whose text and version match the manifest and whose file still has the
    recorded hash is left alone. With ``keep_audio``, existing files (studio recordings)
    are never regenerated, only hashed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        existing: Manifest | None = load_manifest(directory)
    except CatalogueError:
        existing = None
    built: list[BuiltSegment] = []
    for segment in catalogue.segment:
        path = directory / f"{segment.id}.wav"
        fresh = _current(existing, segment.id, segment.version, segment.text, directory)
        if not fresh and not (keep_audio and path.is_file()):
            speak(segment.text, path)
        built.append(BuiltSegment(**segment.model_dump(), file=path.name,
                                  sha256=sha256_file(path), duration_ms=wav_duration_ms(path)))
    manifest = Manifest(segments=built, notices=catalogue.notice)
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(dump_manifest(manifest), encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)
    return manifest


def verify(directory: Path) -> Manifest:
    """Load the manifest and check each file still has its recorded hash."""
    manifest = load_manifest(directory)
    for segment in manifest.segments:
        path = directory / segment.file
        if not path.is_file():
            raise CatalogueError(f"{path}: missing (manifest names it for {segment.id!r})")
        if sha256_file(path) != segment.sha256:
            raise CatalogueError(
                f"{path}: audio differs from the manifest; raise the segment's version and run "
                "`ivr prompts build --keep-audio`"
            )
    return manifest
