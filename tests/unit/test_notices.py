"""ivr.notices: the catalogue of what callers hear (``prompts/notices.toml``) and the audio
built from it, whose hashes a consent receipt names (rule 3).

The audio tests run the real espeak-ng and sox: they are fast, and the WAV Asterisk plays is
what they check.
"""

from __future__ import annotations

import os
import shutil
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from ivr.notices import audio
from ivr.notices.audio import build, sha256_file, verify, wav_duration_ms
from ivr.notices.catalogue import (
    DEFAULT_CATALOGUE,
    MANIFEST,
    Catalogue,
    CatalogueError,
    load_catalogue,
    load_manifest,
)

# POLICY.md, "The notices (verbatim from the source; these are the prompts to play)".
SALES_NOTICE = (
    "Zaradi spremljanja dokazov o poslovni komunikaciji se vaš pogovor snema, posnetek bomo "
    "hranili 6 mesecev. Več informacij o obdelavi osebnih podatkov je na voljo na spletni "
    "strani A1."
)
SERVICE_NOTICE = (
    "Zaradi spremljanja dokazov o poslovni komunikaciji kot je npr. naročilo storitev se vaš "
    "pogovor snema. Če je klic splošne narave, vas zaradi zagotavljanja visokega nivoja "
    "storitev prosimo za podajo soglasja za snemanje. Če s snemanjem soglašate pritisnite 1, "
    "sicer pritisnite 2. Posnetek bomo hranili 6 mesecev. Soglasje lahko prekličete s klicem "
    "v klicni center. Več informacij o obdelavi osebnih podatkov je na voljo na spletni "
    "strani A1."
)
SEGMENTS = ["sales-notice", "service-information", "service-question", "service-closing"]
PAST = 1_600_000_000_000_000_000  # 2020-09-13, in ns: "not touched by this test"


def _joined(catalogue: Catalogue, notice: str) -> str:
    return " ".join(catalogue.by_id(s).text for s in catalogue.notice[notice].segments)


# --- the real catalogue ------------------------------------------------------------------------


def test_real_catalogue_loads() -> None:
    catalogue = load_catalogue()
    assert DEFAULT_CATALOGUE.name == "notices.toml"
    assert [s.id for s in catalogue.segment] == SEGMENTS
    assert set(catalogue.notice) == {"sales", "service"}
    assert all(s.version >= 1 for s in catalogue.segment)


def test_notices_rule_sales_notice_is_policy_text_verbatim_without_question() -> None:
    """POLICY.md notices: the sales line plays the quoted text; no question (legal basis)."""
    catalogue = load_catalogue()
    assert catalogue.notice["sales"].segments == ["sales-notice"]
    assert _joined(catalogue, "sales") == SALES_NOTICE
    assert not catalogue.by_id("sales-notice").question


def test_notices_rule_service_notice_is_policy_text_verbatim() -> None:
    """POLICY.md notices: the service line plays the quoted text, in three segments."""
    catalogue = load_catalogue()
    assert len(catalogue.notice["service"].segments) == 3
    assert _joined(catalogue, "service") == SERVICE_NOTICE


def test_rule_2_service_notice_has_one_question_segment_in_the_middle() -> None:
    """Rule 2: the 1/2 question is one segment, so the flow knows when the question begins."""
    catalogue = load_catalogue()
    segments = [catalogue.by_id(s) for s in catalogue.notice["service"].segments]
    assert [s.question for s in segments] == [False, True, False]
    assert [("pritisnite 1" in s.text) for s in segments] == [False, True, False]
    assert "pritisnite 2" in segments[1].text


def test_notices_match_their_quotes_in_policy_md() -> None:
    """The constants above are the quotes of POLICY.md, checked here when it is at hand."""
    policy = Path("/work/shared/policy/POLICY.md")
    if not policy.is_file():
        pytest.skip(f"{policy} is outside the repository and not here")
    quoted = [line[2:] for line in policy.read_text(encoding="utf-8").splitlines()
              if line.startswith("> ")]
    assert quoted == [SALES_NOTICE, SERVICE_NOTICE]


def test_by_id_of_unknown_segment_is_key_error() -> None:
    with pytest.raises(KeyError):
        load_catalogue().by_id("nope")


# --- catalogue errors --------------------------------------------------------------------------

GOOD = """\
[[segment]]
id = "a"
version = 1
text = "Prvi."

[[segment]]
id = "b"
version = 1
question = true
text = "Pritisnite 1."

[notice.n]
segments = ["a", "b"]
"""

BAD = [
    pytest.param(GOOD.replace('id = "b"', 'id = "a"'), "a segment id is used twice",
                 id="duplicate-id"),
    pytest.param(GOOD.replace('["a", "b"]', '["a", "c"]'),
                 "notice 'n' names unknown segments ['c']", id="unknown-segment"),
    pytest.param(GOOD.replace('text = "Prvi."', 'question = true\ntext = "Prvi."'),
                 "notice 'n' has more than one question segment", id="two-questions"),
    pytest.param(GOOD.replace('text = "Prvi."', 'text = "Prvi.'), "notices.toml",
                 id="malformed-toml"),
    pytest.param(GOOD + "[notice.n]\n", "notices.toml", id="table-twice"),
    pytest.param(GOOD.replace("version = 1", "version = 0", 1), "version",
                 id="version-zero"),
    pytest.param(GOOD.replace('text = "Prvi."', 'text = ""'), "text", id="empty-text"),
    pytest.param(GOOD.replace('id = "a"', 'id = "../../etc/passwd"').replace('"a", "b"',
                                                                            '"b"'),
                 "id", id="id-with-path"),
    pytest.param(GOOD.split("[notice.n]")[0], "notice", id="no-notices"),
    pytest.param("", "segment", id="empty-file"),
]


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_bad_catalogue_is_catalogue_error(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "notices.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert reason in str(caught.value)


def test_good_catalogue_loads(tmp_path: Path) -> None:
    path = tmp_path / "notices.toml"
    path.write_text(GOOD, encoding="utf-8")
    catalogue = load_catalogue(path)
    assert catalogue.by_id("b").question


def test_missing_catalogue_is_catalogue_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="no notice catalogue there"):
        load_catalogue(tmp_path / "nowhere.toml")


def test_missing_manifest_is_catalogue_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="no prompt manifest"):
        verify(tmp_path)


def test_malformed_manifest_is_catalogue_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text('{"segments": [{"id": "a"}]}')
    with pytest.raises(CatalogueError, match=MANIFEST):
        load_manifest(tmp_path)


def test_manifest_that_is_not_utf8_is_catalogue_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_bytes(b'{"segments": [], "notices": {"\xff": 1}}')
    with pytest.raises(CatalogueError, match=MANIFEST):
        load_manifest(tmp_path)


def test_manifest_lookups_of_unknown_names_are_catalogue_errors(tmp_path: Path) -> None:
    manifest = build(load_catalogue(), tmp_path)
    with pytest.raises(CatalogueError, match="segment 'nope' is not in the manifest"):
        manifest.segment("nope")
    with pytest.raises(CatalogueError, match="notice 'nope' is not in the manifest"):
        manifest.notice_segments("nope")


# --- building the audio ------------------------------------------------------------------------

Spoken = list[str]


@pytest.fixture
def spoken(monkeypatch: pytest.MonkeyPatch) -> Spoken:
    """The segment files ``build`` speaks (really, with espeak-ng and sox) in this test."""
    calls: Spoken = []
    real: Callable[..., None] = audio.speak

    def spy(text: str, target: Path, voice: str = "sl") -> None:
        calls.append(target.name)
        real(text, target, voice)

    monkeypatch.setattr(audio, "speak", spy)
    return calls


def _age(directory: Path) -> None:
    for path in directory.glob("*.wav"):
        os.utime(path, ns=(PAST, PAST))


def _untouched(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.wav") if p.stat().st_mtime_ns == PAST}


def test_rule_3_build_writes_8khz_mono_16bit_wavs_with_their_hashes(
    tmp_path: Path, spoken: Spoken
) -> None:
    """Rule 3: the manifest keeps each segment's id, version, text and audio hash together."""
    catalogue = load_catalogue()
    manifest = build(catalogue, tmp_path)
    assert spoken == [f"{s}.wav" for s in SEGMENTS]
    assert [s.id for s in manifest.segments] == SEGMENTS
    for built in manifest.segments:
        path = tmp_path / built.file
        assert built.file == f"{built.id}.wav"
        with wave.open(str(path), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            assert w.getnframes() > 8000  # more than a second of speech
        assert built.sha256 == sha256_file(path)
        assert built.duration_ms == wav_duration_ms(path) > 1000
        source = catalogue.by_id(built.id)
        assert (built.version, built.text, built.question) == (
            source.version, source.text, source.question)
    assert load_manifest(tmp_path) == manifest
    assert manifest.notices == catalogue.notice
    assert [s.id for s in manifest.notice_segments("service")] == SEGMENTS[1:]
    assert not (tmp_path / (MANIFEST + ".tmp")).exists()


def test_second_build_regenerates_nothing(tmp_path: Path, spoken: Spoken) -> None:
    catalogue = load_catalogue()
    first = build(catalogue, tmp_path)
    _age(tmp_path)
    spoken.clear()
    second = build(catalogue, tmp_path)
    assert spoken == []
    assert _untouched(tmp_path) == {f"{s}.wav" for s in SEGMENTS}
    assert second == first


def test_changed_segment_text_regenerates_only_that_segment(
    tmp_path: Path, spoken: Spoken
) -> None:
    catalogue = load_catalogue()
    first = build(catalogue, tmp_path)
    _age(tmp_path)
    spoken.clear()
    changed = catalogue.model_copy(deep=True)
    question = changed.by_id("service-question")
    question.text = "Če s snemanjem soglašate, pritisnite 1. Če ne soglašate, pritisnite 2."
    question.version = 2
    second = build(changed, tmp_path)
    assert spoken == ["service-question.wav"]
    assert _untouched(tmp_path) == {"sales-notice.wav", "service-information.wav",
                                    "service-closing.wav"}
    assert second.segment("service-question").version == 2
    assert second.segment("service-question").sha256 != first.segment("service-question").sha256
    assert second.segment("service-question").sha256 == sha256_file(
        tmp_path / "service-question.wav")
    for other in ("sales-notice", "service-information", "service-closing"):
        assert second.segment(other) == first.segment(other)
    verify(tmp_path)


def test_changed_text_with_the_same_version_is_regenerated_too(
    tmp_path: Path, spoken: Spoken
) -> None:
    catalogue = load_catalogue()
    build(catalogue, tmp_path)
    spoken.clear()
    changed = catalogue.model_copy(deep=True)
    changed.by_id("sales-notice").text = "Vaš pogovor se snema."
    assert build(changed, tmp_path).segment("sales-notice").text == "Vaš pogovor se snema."
    assert spoken == ["sales-notice.wav"]


def test_rule_3_verify_accepts_the_built_audio(tmp_path: Path) -> None:
    manifest = build(load_catalogue(), tmp_path)
    assert verify(tmp_path) == manifest


def test_rule_3_verify_detects_a_changed_audio_file(tmp_path: Path) -> None:
    """Rule 3: a receipt's audio hash must be of the audio played; a changed file is refused."""
    build(load_catalogue(), tmp_path)
    path = tmp_path / "service-question.wav"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogueError, match=r"service-question\.wav: audio differs from the "
                                             r"manifest; raise the segment's version"):
        verify(tmp_path)


def test_rule_3_verify_detects_a_missing_audio_file(tmp_path: Path) -> None:
    build(load_catalogue(), tmp_path)
    (tmp_path / "sales-notice.wav").unlink()
    with pytest.raises(CatalogueError, match=r"sales-notice\.wav: missing .*'sales-notice'"):
        verify(tmp_path)


def test_keep_audio_hashes_a_replaced_file_without_regenerating_it(
    tmp_path: Path, spoken: Spoken
) -> None:
    """A studio recording replaces the espeak placeholder: hashed as it is, never re-spoken."""
    catalogue = load_catalogue()
    first = build(catalogue, tmp_path)
    studio = tmp_path / "sales-notice.wav"
    studio.write_bytes((tmp_path / "service-closing.wav").read_bytes())
    studio_bytes = studio.read_bytes()
    spoken.clear()
    with pytest.raises(CatalogueError, match="audio differs"):
        verify(tmp_path)
    manifest = build(catalogue, tmp_path, keep_audio=True)
    assert spoken == []
    assert studio.read_bytes() == studio_bytes
    assert manifest.segment("sales-notice").sha256 == sha256_file(studio)
    assert manifest.segment("sales-notice").sha256 != first.segment("sales-notice").sha256
    assert manifest.segment("sales-notice").duration_ms == wav_duration_ms(studio)
    assert verify(tmp_path) == manifest


def test_without_keep_audio_a_replaced_file_is_regenerated(
    tmp_path: Path, spoken: Spoken
) -> None:
    catalogue = load_catalogue()
    build(catalogue, tmp_path)
    (tmp_path / "sales-notice.wav").write_bytes((tmp_path / "service-closing.wav").read_bytes())
    spoken.clear()
    build(catalogue, tmp_path)
    assert spoken == ["sales-notice.wav"]
    verify(tmp_path)


def test_keep_audio_still_speaks_a_missing_file(tmp_path: Path, spoken: Spoken) -> None:
    catalogue = load_catalogue()
    build(catalogue, tmp_path)
    (tmp_path / "service-information.wav").unlink()
    spoken.clear()
    build(catalogue, tmp_path, keep_audio=True)
    assert spoken == ["service-information.wav"]
    verify(tmp_path)


def test_build_over_a_broken_manifest_rebuilds_everything(
    tmp_path: Path, spoken: Spoken
) -> None:
    catalogue = load_catalogue()
    build(catalogue, tmp_path)
    (tmp_path / MANIFEST).write_text("not json")
    spoken.clear()
    build(catalogue, tmp_path)
    assert spoken == [f"{s}.wav" for s in SEGMENTS]
    verify(tmp_path)


def test_missing_tools_are_a_catalogue_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(CatalogueError, match=r"espeak-ng is not installed \(apt-get install"):
        build(load_catalogue(), tmp_path)
