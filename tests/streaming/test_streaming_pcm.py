"""PCM decoding (stereo, int16 vs float), format conversion, and the original-audio playout."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from streaming_inputs import speech_like

from lipforcing.errors import UserError
from lipforcing.streaming.integrations.playout import Playout
from lipforcing.streaming.pcm import FormatConverter, interleaved, to_float32


def tone(seconds: float, rate: int, dbfs: float = -20.0, channels: int = 1) -> np.ndarray:
    """(n, channels) int16 sine at 440 Hz and ``dbfs`` peak, the same on every channel."""
    t = np.arange(int(seconds * rate)) / rate
    x = np.round(10 ** (dbfs / 20) * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return np.repeat(x[:, None], channels, axis=1)


def rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, np.float64)))))


def test_stereo_int16_keeps_its_level():
    mono, stereo = tone(0.5, 16_000), tone(0.5, 16_000, channels=2)
    a, b = to_float32(mono[:, 0]), to_float32(stereo)
    assert rms(a) == pytest.approx(10 ** (-20 / 20) / np.sqrt(2), rel=1e-3)  # -20 dBFS sine
    np.testing.assert_array_equal(a, b)  # same samples on both channels: same mono
    np.testing.assert_array_equal(to_float32(stereo.T), b)  # (channels, n) layout too
    np.testing.assert_array_equal(to_float32(mono[:, 0].tobytes()), a)  # int16 bytes
    left_only = stereo.copy()
    left_only[:, 1] = 0
    np.testing.assert_allclose(to_float32(left_only), a / 2, atol=1e-7)  # averaged, not summed


def test_valid_float_input_is_not_altered():
    x = speech_like(0.3)
    x[100] = 1.0
    x[200] = -1.0
    assert np.array_equal(to_float32(x), x)
    assert np.array_equal(to_float32(x.astype(np.float64)), x)
    stereo = np.stack([x, -x], 1)
    np.testing.assert_array_equal(to_float32(stereo), np.zeros_like(x))
    assert to_float32(np.array([2.0, -3.0])).tolist() == [1.0, -1.0]  # out of range: clipped
    with pytest.raises(UserError, match="int16 or float"):
        to_float32(np.zeros(4, np.int32))


def test_interleaved_bytes():
    pcm = tone(0.01, 48_000, channels=2)
    np.testing.assert_array_equal(interleaved(pcm.tobytes(), 2), pcm)
    with pytest.raises(UserError, match="multiple of 4"):
        interleaved(pcm.tobytes()[:-2], 2)
    with pytest.raises(UserError, match="channel count"):
        interleaved(b"", 9)


def test_format_converter_passes_its_own_format_bit_for_bit():
    conv = FormatConverter(24_000, 1)
    pcm = tone(0.2, 24_000)
    assert conv(pcm, 24_000) is pcm
    stereo48 = tone(0.5, 48_000, channels=2)
    pieces = [conv(stereo48[i : i + 480], 48_000) for i in range(0, len(stereo48), 480)]
    out = np.concatenate([*pieces, conv.flush()])
    assert out.shape == (12_000, 1) and out.dtype == np.int16
    want = soxr.resample(stereo48[:, :1], 48_000, 24_000)
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 2  # int16 rounding
    up = FormatConverter(48_000, 2)
    both = np.concatenate([up(pcm, 24_000), up.flush()])
    assert both.shape == (9_600, 2) and np.array_equal(both[:, 0], both[:, 1])


@pytest.mark.parametrize(("rate", "channels"), [(16_000, 1), (24_000, 1), (48_000, 2), (44_100, 1)])
def test_playout_returns_every_sample_once_in_order(rate, channels):
    rng = np.random.default_rng(rate + channels)
    pcm = np.round(speech_like(1.3, rate=rate)[:, None].repeat(channels, 1) * 32768)
    pcm = pcm.astype(np.int16)
    playout = Playout()
    copy, pos = [], 0
    while pos < len(pcm):
        k = int(rng.integers(1, rate // 20))
        copy.append(playout.push(pcm[pos : pos + k], rate))
        pos += k
    copy.append(playout.end_segment())
    copy = np.concatenate(copy)
    assert len(copy) == playout.pushed == round(len(pcm) * 16_000 / rate)
    # the 16 kHz copy is the one-shot resampling of the mono mix
    want = soxr.resample(pcm.mean(1) / 32768, rate, 16_000).astype(np.float32)
    np.testing.assert_allclose(copy, want, atol=2e-3)
    # frames of 640 samples: each gets the original samples of its time span, exactly
    played, ends = [], 0
    for start in range(0, playout.pushed, 640):
        stop = min(start + 640, playout.pushed)
        pieces = playout.release((start, stop))
        assert all(p.rate == rate and p.channels == channels for p in pieces)
        got = np.concatenate([p.pcm for p in pieces]) if pieces else pcm[:0]
        lo = round(start * rate / 16_000)
        assert np.array_equal(got, pcm[lo : lo + len(got)])
        played.append(got)
        ends += playout.segment_ends()
    assert np.array_equal(np.concatenate(played), pcm)  # bit for bit, nothing lost
    assert ends == 1 and not playout.pending


def test_playout_segment_end_after_everything_played_is_still_reported():
    playout = Playout()
    playout.push(tone(0.1, 16_000), 16_000)
    assert len(playout.release((0, 1600))[0].pcm) == 1600
    assert playout.segment_ends() == 0
    playout.end_segment()  # the end arrives after all its audio has played
    assert playout.segment_ends() == 1
    assert playout.segment_ends() == 0  # counted once


def test_playout_clear_drops_the_unplayed_audio():
    playout = Playout()
    first = tone(0.2, 24_000)
    playout.push(first, 24_000, tag="a")
    head = playout.release((0, 640))
    playout.end_segment()
    playout.clear()  # interruption: the rest of "a" and its segment end are gone
    assert playout.release((640, 1280)) == [] and playout.segment_ends() == 0
    second = tone(0.1, 48_000, channels=2)
    at = playout.pushed
    playout.push(second, 48_000, tag="b")
    playout.end_segment()
    rest = playout.release((at, playout.pushed))
    assert [p.tag for p in head + rest] == ["a", "b"]
    assert np.array_equal(rest[0].pcm, second) and rest[0].rate == 48_000
    assert playout.segment_ends() == 1


def test_playout_follows_format_changes():
    playout = Playout()
    a, b = tone(0.1, 24_000), tone(0.1, 48_000, channels=2)
    playout.push(a, 24_000)
    playout.push(b, 48_000)  # closes the 24 kHz run (its resampler tail is flushed)
    playout.end_segment()
    assert playout.pushed == 3200
    pieces = playout.release((0, 3200))
    assert [(p.rate, p.channels) for p in pieces] == [(24_000, 1), (48_000, 2)]
    assert np.array_equal(pieces[0].pcm, a) and np.array_equal(pieces[1].pcm, b)
