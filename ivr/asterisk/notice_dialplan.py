"""The dialplan that plays the notices itself (``[dialplan] inbound_flow = "dialplan"``),
generated from the notice catalogue so that it plays exactly the segments the service
expects, in order (``ivr/flow/dialplan_notice.py`` decides from its report).

``[ivr-notice-<name>]``, entered at ``s`` with ``IVR_DIALLED`` and ``IVR_QUEUE`` set:

- answers, and pushes the hangup handler ``[ivr-notice-end]`` that notes the call's end;
- plays each segment, noting in ``IVR_PLAYED`` when it started and ended
  (``id@start@end~``). Segments before the question ignore digits (Playback); from the
  question on, a 1 or a 2 stops the notice (Background with ``m``: other digits do not);
- waits for the answer; on silence or another digit asks the question again, as often as
  ``consent.question_repeats`` says;
- asks the service (``notice-decision``, over HTTP with ``CURL()`` or over FastAGI, as
  ``[dialplan] decision_request`` says) to store the decision; records only into
  the file the service names (``IVR_DECIDED``: the decision, the file or ``no``, and when
  the service started the recording over AMI, if it did; ``IVR_RECORD`` is ``no`` until
  then), and starts MixMonitor itself only when the service did not;
- hands the call to its queue.

A segment that fails to play ends the notice there: the report shows it never ended, and
the service decides accordingly (not told: no recording).

Each dialplan step costs Asterisk a message (the channel's new snapshot) on every call. So
variables set together are set by one ``MSet``, which splits its values at commas and
strips quotes around them. None of its values can hold either:

- the catalogue's segment ids (``[a-z0-9-]``);
- the dialplan's own times (``STRFTIME``) and the digit (the extension, 1 or 2);
- ``CURL()``'s limits, whole seconds;
- the parts of the service's answer (``[A-Za-z0-9_.:-]``).

A caller who presses 1 after the notice now passes 32 steps, where there were 48
(``bench/priority-probes/README.md``).
"""

from __future__ import annotations

from ivr.notices.catalogue import Catalogue

NOW = "${STRFTIME(,UTC,%s.%3q)}"
END_CONTEXT = "ivr-notice-end"
SCRIPT = "notice-decision"
DIGIT_EXTENSIONS = "_[12]"
# The caller ID as it arrived, cut to what a report or a note can carry.
CALLER = "${URIENCODE(${CALLERID(num):0:128})}"
# What the notice's report says: the FastAGI argument, or the body CURL() posts.
REPORT = (f"v=1&entered=${{IVR_ENTERED}}&dialled=${{URIENCODE(${{IVR_DIALLED}})}}"
          f"&caller={CALLER}&played=${{IVR_PLAYED}}&digit=${{IVR_DIGIT}}"
          "&digit_at=${IVR_DIGIT_AT}&notice_end=${IVR_NOTICE_END}")
# CURL()'s limits in seconds: the connection (the service on the same host or LAN), and
# the whole request, above the service's own 5 s for the request and 10 s to answer it.
CONNECT_TIMEOUT = 2
REPORT_TIMEOUT = 16


def under_way(ended: str) -> str:
    """The segment playing, if one is, as ``IVR_PLAYED`` notes it, ended at ``ended``
    (empty: never ended); nothing when none is."""
    return f'${{IF($["${{IVR_SEG}}" != ""]?${{IVR_SEG}}@${{IVR_SEG_START}}@{ended}~)}}'


def context_name(notice: str) -> str:
    return f"ivr-notice-{notice}"


def _segment(segment_id: str, answerable: bool) -> list[str]:
    """One segment: noted as started, played, noted as ended (or the notice stops)."""
    if answerable:
        play, status = f"Background(@@sound_prefix@@/{segment_id},m)", "BACKGROUNDSTATUS"
    else:
        play, status = f"Playback(@@sound_prefix@@/{segment_id})", "PLAYBACKSTATUS"
    return [
        f" same => n,MSet(IVR_SEG={segment_id},IVR_SEG_START={NOW})",
        f" same => n,{play}",
        f' same => n,GotoIf($["${{{status}}}" != "SUCCESS"]?decide,1)',
        f" same => n,MSet(IVR_PLAYED=${{IVR_PLAYED}}{segment_id}@${{IVR_SEG_START}}@{NOW}~,"
        "IVR_SEG=)",
    ]


def _ask(request: str) -> list[str]:
    """The request for the decision, which sets ``IVR_DECIDED`` to the service's answer
    (left empty when there is none)."""
    if request == "fastagi":
        return [f" same => n,AGI(agi://@@fastagi@@/{SCRIPT},{REPORT})"]
    return [f" same => n,MSet(CURLOPT(conntimeout)={CONNECT_TIMEOUT},"
            f"CURLOPT(httptimeout)={REPORT_TIMEOUT})",
            f" same => n,Set(IVR_DECIDED=${{CURL(http://@@report_http@@/{SCRIPT}"
            f"?channel=${{UNIQUEID}}&name=${{URIENCODE(${{CHANNEL}})}},{REPORT})}})"]


def notice_context(catalogue: Catalogue, notice: str, request: str = "http") -> list[str]:
    segments = [catalogue.by_id(s) for s in catalogue.notice[notice].segments]
    question = next((s.id for s in segments if s.question), None)
    lines = [
        f"[{context_name(notice)}]",
        # A channel that comes back here has had its notice: on to its queue, unrecorded.
        'exten => s,1,GotoIf($["${IVR_ENTERED}" != ""]?@@queue_context@@,${IVR_QUEUE},1)',
        " same => n,Answer()",
        f" same => n,MSet(IVR_ENTERED={NOW},IVR_RECORD=no,IVR_ASKED=0)",
        f" same => n,Set(CHANNEL(hangup_handler_push)={END_CONTEXT},s,1)",
    ]
    asked = False
    for segment in segments:
        asked = asked or segment.question
        lines += _segment(segment.id, asked)
    lines.append(f" same => n,Set(IVR_NOTICE_END={NOW})")
    if question is None:
        lines.append(" same => n,Goto(decide,1)")
    else:
        lines += [
            " same => n,WaitExten(@@answer_timeout@@)",
            "; the answer: a 1 or a 2, during the question or after the notice",
            f"exten => {DIGIT_EXTENSIONS},1,Set(IVR_DIGIT_AT={NOW})",
            " same => n,MSet(IVR_DIGIT=${EXTEN},IVR_PLAYED=${IVR_PLAYED}"
            f"{under_way('${IVR_DIGIT_AT}')},IVR_SEG=,"
            'IVR_NOTICE_END=${IF($["${IVR_NOTICE_END}" = ""]?${IVR_DIGIT_AT}'
            ':${IVR_NOTICE_END})})',
            " same => n,Goto(decide,1)",
            "; silence or another digit: the question again, as often as the settings say",
            "exten => t,1,GotoIf($[${IVR_ASKED} >= @@question_repeats@@]?decide,1)",
            " same => n,Set(IVR_ASKED=$[${IVR_ASKED} + 1])",
            *_segment(question, True),
            " same => n,WaitExten(@@answer_timeout@@)",
            "exten => i,1,Goto(t,1)",
        ]
    lines += [
        "; the service stores the decision first; it names the file only if it allows one",
        "exten => decide,1,Set(IVR_DECIDED=)",
        *_ask(request),
        ' same => n,GotoIf($["${IVR_DECIDED}" = ""]?queue)',
        "; the answer's parts; the service started the recording (over AMI) when it says when",
        " same => n,MSet(IVR_DECISION=${CUT(IVR_DECIDED,:,1)},IVR_RECORD=${CUT(IVR_DECIDED,:,2)},"
        "IVR_RECORDING_AT=${CUT(IVR_DECIDED,:,3)})",
        ' same => n,GotoIf($["${IVR_RECORD}" = "no" | "${IVR_RECORD}" = ""]?queue)',
        ' same => n,GotoIf($["${IVR_RECORDING_AT}" != ""]?queue)',
        f" same => n,Set(IVR_RECORDING_AT={NOW})",
        " same => n,MixMonitor(@@recordings_dir@@/${IVR_RECORD},i(IVR_MIXMONITOR_ID))",
        ' same => n(queue),MSet(IVR_RECORDED=${IF($["${IVR_MIXMONITOR_ID}" = ""]?no:yes)},'
        "IVR_QUEUED=1)",
        " same => n,Goto(@@queue_context@@,${IVR_QUEUE},1)",
    ]
    return lines


def end_context() -> list[str]:
    """The hangup handler: one note a call, read by the service (ivr/calls/dialplan_notice)."""
    return [
        f"[{END_CONTEXT}]",
        "exten => s,1,Set(FILE(@@unattended_dir@@/${UNIQUEID}.notice,,,a)=v=1"
        "&channel=${URIENCODE(${UNIQUEID})}&entered=${IVR_ENTERED}"
        f"&ended={NOW}&dialled=${{URIENCODE(${{IVR_DIALLED}})}}"
        # a segment under way when the call ended: noted as never ended
        f"&caller={CALLER}&played=${{IVR_PLAYED}}{under_way('')}&digit=${{IVR_DIGIT}}"
        "&digit_at=${IVR_DIGIT_AT}&notice_end=${IVR_NOTICE_END}&decision=${IVR_DECISION}"
        "&recording=${IVR_RECORD}&recording_at=${IVR_RECORDING_AT}"
        "&mixmonitor=${URIENCODE(${IVR_MIXMONITOR_ID})}&agent=${URIENCODE(${MEMBERNAME})}"
        "&queue_status=${QUEUESTATUS}&queued=${IVR_QUEUED}&cause=${HANGUPCAUSE}"
        # the queue's load as the call ends (rule 4's exception: substantially overloaded)
        "&waiting=${QUEUE_WAITING_COUNT(${IVR_QUEUE})}"
        "&available=${QUEUE_MEMBER(${IVR_QUEUE},free)})",
        " same => n,Return()",
    ]


def notices_dialplan(catalogue: Catalogue, request: str = "http") -> str:
    """``request``: how the decision is asked for, ``http`` or ``fastagi``
    (``[dialplan] decision_request``)."""
    lines = ["; Generated from the notice catalogue by `ivr asterisk-conf render`. Do not edit.",
             "; The notices the dialplan plays itself (inbound_flow = dialplan)."]
    for notice in catalogue.notice:
        lines += [*notice_context(catalogue, notice, request), ""]
    return "\n".join([*lines, *end_context()]) + "\n"
