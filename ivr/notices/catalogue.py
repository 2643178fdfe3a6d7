"""The notice catalogue (``prompts/notices.toml``) and the manifest of built audio.

Pure: reading and checking data, no audio work. A consent receipt names a segment by its
id, version and the SHA-256 of the audio, which the manifest keeps together.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, ValidationError, model_validator

MANIFEST = "manifest.json"
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[2] / "prompts" / "notices.toml"


class CatalogueError(ValueError):
    """The catalogue or the manifest is missing, malformed or does not match the audio."""


class Segment(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,63}$")
    version: int = Field(ge=1)
    text: str = Field(min_length=1)
    question: bool = False


class Notice(BaseModel):
    segments: list[str] = Field(min_length=1)


class Catalogue(BaseModel):
    segment: list[Segment] = Field(min_length=1)
    notice: dict[str, Notice] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [s.id for s in self.segment]
        if len(ids) != len(set(ids)):
            raise ValueError("a segment id is used twice")
        for name, notice in self.notice.items():
            unknown = [s for s in notice.segments if s not in ids]
            if unknown:
                raise ValueError(f"notice {name!r} names unknown segments {unknown}")
            if sum(self.by_id(s).question for s in notice.segments) > 1:
                raise ValueError(f"notice {name!r} has more than one question segment")
        return self

    def by_id(self, segment_id: str) -> Segment:
        for s in self.segment:
            if s.id == segment_id:
                return s
        raise KeyError(segment_id)


class BuiltSegment(Segment):
    """A segment with the audio file that speaks it."""

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    duration_ms: int = Field(ge=0)


class Manifest(BaseModel):
    segments: list[BuiltSegment]
    notices: dict[str, Notice]

    def segment(self, segment_id: str) -> BuiltSegment:
        for s in self.segments:
            if s.id == segment_id:
                return s
        raise CatalogueError(f"segment {segment_id!r} is not in the manifest")

    def notice_segments(self, notice: str) -> list[BuiltSegment]:
        if notice not in self.notices:
            raise CatalogueError(f"notice {notice!r} is not in the manifest")
        return [self.segment(s) for s in self.notices[notice].segments]

    def catalogue(self) -> Catalogue:
        """The catalogue these prompts were built from."""
        return Catalogue(segment=[Segment(id=s.id, version=s.version, text=s.text,
                                          question=s.question) for s in self.segments],
                         notice=dict(self.notices))


def load_catalogue(path: Path = DEFAULT_CATALOGUE) -> Catalogue:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Catalogue.model_validate(data)
    except FileNotFoundError:
        raise CatalogueError(f"{path}: no notice catalogue there") from None
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise CatalogueError(f"{path}: {exc}") from None


def load_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(
            f"{path}: no prompt manifest (run `ivr prompts build --out {directory}`)"
        ) from None
    except (ValidationError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from None


def dump_manifest(manifest: Manifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"
