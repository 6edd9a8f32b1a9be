"""StreamStats from a scripted sequence of session events, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from lipforcing.streaming.session import LATENCY_WINDOW, StreamStats


def test_chunks_give_generation_fps_and_first_chunk_time():
    st = StreamStats()
    st.record_chunk(0.2, 9)
    st.record_chunk(0.3, 12)
    assert st.chunks == 2
    assert st.first_chunk_compute_s == 0.2
    assert st.gen_fps == pytest.approx(21 / 0.5)


def test_emits_give_ttff_fps_and_latency():
    st = StreamStats()
    st.record_push(10.0)
    st.record_push(10.3)  # only the first push starts the TTFF
    st.record_emit(10.5, speech=False, arrival=math.nan, pending_s=1.0)  # idle
    assert st.ttff_s is None and st.fps is None and st.latency_p50_s is None
    st.record_emit(10.54, speech=True, arrival=10.1, pending_s=0.5)
    st.record_emit(10.58, speech=True, arrival=10.3, pending_s=0.25)
    assert st.frames_out == 3 and st.speech_frames_out == 2
    assert st.ttff_s == pytest.approx(0.54)
    assert st.fps == pytest.approx(2 / 0.08)
    assert st.latency_p50_s == pytest.approx((0.44 + 0.28) / 2)
    assert st.queue_delay_max_s == pytest.approx(0.44)
    assert st.audio_pending_s == 0.25
    st.record_dropped(3)
    st.record_late()
    assert st.dropped_frames == 3 and st.late_frames == 1
    assert not any(k.startswith("_") for k in st.as_dict())


def test_latency_percentiles_cover_the_last_window_of_frames():
    st = StreamStats()
    n = LATENCY_WINDOW + 10
    for k in range(1, n + 1):  # delays 1 ms, 2 ms, ... : the window keeps the last ones
        st.record_emit(100.0 + k, speech=True, arrival=100.0 + k - k / 1000, pending_s=0.0)
    first = n - LATENCY_WINDOW + 1  # smallest delay (ms) still in the window
    assert st.latency_p50_s == pytest.approx((first + n) / 2 / 1000)
    assert st.queue_delay_max_s == pytest.approx(n / 1000)
    assert st.queue_delay_mean_s == pytest.approx((first + n) / 2 / 1000)
