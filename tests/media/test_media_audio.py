"""media.audio: mel windows (shape, centring, edges) and OmniAvatar-style wav2vec2 features."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from lipforcing.config import AudioConfig
from lipforcing.errors import UserError
from lipforcing.media.audio import Wav2Vec2Features, audio_features, log_mel


@pytest.mark.parametrize("fps,frames", [(25.0, 50), (30000 / 1001, 7), (25.0, 1), (50.0, 120)])
def test_mel_feature_dim_for_any_frame_count(fps, frames):
    cfg = AudioConfig(kind="mel", n_mels=32, context_frames=2, fps=fps)
    wav = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    feats = audio_features(wav, cfg, frames)
    assert feats.shape == (frames, cfg.feature_dim) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_mel_window_is_centred_on_its_frame():
    cfg = AudioConfig(kind="mel", n_mels=32, context_frames=2)  # 4 mel frames per video frame
    wav = np.zeros(16_000 * 2, np.float32)
    k, spf = 20, 640
    wav[k * spf : (k + 1) * spf] = np.sin(np.arange(spf) * 0.3)  # a burst inside frame k only
    feats = audio_features(wav, cfg, 50).reshape(50, 32, 5, 4)  # (T, mel, context, per-frame)
    energy = feats.mean(axis=(1, 3))  # (T, context position)
    # frame k sees the burst in its centre slot, frame k - 1 one slot right, k + 2 two left
    assert np.argmax(energy[k]) == 2
    assert np.argmax(energy[k - 1]) == 3 and np.argmax(energy[k + 2]) == 0
    assert energy[k + 5].max() < energy[k].max() - 0.5  # far frames do not hear it


def test_mel_matches_librosa_and_edge_padding():
    cfg = AudioConfig(kind="mel", n_mels=16, context_frames=1)
    wav = np.random.default_rng(1).normal(0, 0.1, 4000).astype(np.float32)
    mel = librosa.feature.melspectrogram(
        y=wav, sr=16_000, n_fft=400, hop_length=160, n_mels=16, pad_mode="constant"
    )
    oracle = np.log10(mel + 1e-8) / 4
    assert np.allclose(log_mel(wav, cfg), oracle, atol=1e-5)
    feats = audio_features(wav, cfg, 10).reshape(10, 16, 12)
    assert np.allclose(feats[3], oracle[:, 8:20], atol=1e-5)  # frame 3: mel frames 12 +- 4
    assert np.allclose(feats[0][:, :4], oracle[:, :1], atol=1e-5)  # before the start: edge
    assert np.allclose(feats[9][:, -4:], oracle[:, -1:], atol=1e-5)  # past the end: edge


def test_bad_audio():
    cfg = AudioConfig(kind="mel", n_mels=16)
    with pytest.raises(UserError, match="empty"):
        audio_features(np.zeros(0, np.float32), cfg, 5)
    with pytest.raises(UserError):
        audio_features(np.zeros(100, np.float32), AudioConfig(), 5)  # wav2vec2 without a model


@pytest.fixture
def tiny_wav2vec2(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    model = Wav2Vec2Model(config).eval()
    model.save_pretrained(tmp_path / "w2v")
    return tmp_path / "w2v", model


def test_wav2vec2_features(tiny_wav2vec2):
    path, model = tiny_wav2vec2
    feats = Wav2Vec2Features(path)
    wav = np.random.default_rng(2).normal(0, 0.1, 16_000).astype(np.float32)
    assert feats.feature_dim == 32 * 4  # last state + embedding output + 2 layers
    out = audio_features(wav, AudioConfig(), 25, wav2vec2=feats)
    assert out.shape == (25, 128) and np.isfinite(out).all()
    # at the encoder's own frame count the interpolation is the identity: compare with the
    # stock model's hidden states, concatenated OmniAvatar-style
    x = torch.from_numpy(wav)[None]
    x = (x - x.mean()) / torch.sqrt(x.var() + 1e-7)
    with torch.no_grad():
        ref = model(x, output_hidden_states=True)
    length = ref.last_hidden_state.shape[1]
    oracle = torch.cat([ref.last_hidden_state, *ref.hidden_states], -1)[0].numpy()
    assert np.allclose(feats(wav, length), oracle, atol=1e-4)


def test_wav2vec2_bad_dir(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        Wav2Vec2Features(tmp_path)


@pytest.mark.parametrize("n_mels", [16, 32, 80])
def test_mel_filters_are_librosas(n_mels):
    from lipforcing.media.audio import N_FFT, _mel_filters

    ours = _mel_filters(16_000, N_FFT, n_mels).numpy()
    theirs = librosa.filters.mel(sr=16_000, n_fft=N_FFT, n_mels=n_mels)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-8)
    assert _mel_filters(16_000, N_FFT, n_mels) is _mel_filters(16_000, N_FFT, n_mels)  # cached


def test_the_runtime_does_not_import_librosa():
    """librosa's numba compilation cost a 38 s first chunk; the runtime uses torch.stft."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from lipforcing.config import tiny\n"
        "from lipforcing.media.audio import audio_features\n"
        "import lipforcing.streaming.engine, lipforcing.streaming.session\n"
        "audio_features(np.zeros(16000, np.float32), tiny().audio, 25)\n"
        "assert 'librosa' not in sys.modules, 'librosa imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
