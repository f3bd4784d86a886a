"""A text model whose image code reads renders (conf/flickr8k) exports and retrieves from its bundle."""

import numpy as np
import torch

from bitlatent.core.binary import pack_bits
from bitlatent.export import ExportConfig, export_bundle, text_model_parts
from bitlatent.export.bundle import LatentLibraryInput
from bitlatent.inference import OnnxGenerator
from bitlatent.text.model import TextToLatent, TextToLatentConfig
from tests.export.test_decoder_graph import small_decoder


def test_a_render_code_model_exports_its_library_codes_and_retrieves(tmp_path):
    decoder = small_decoder()
    torch.manual_seed(0)
    config = TextToLatentConfig.for_spec(decoder.latent_spec, width=32, heads=2, layers=1, text_layers=1, code_bits=16,
                                         image_code_hidden=32, image_code_input="render", render_width=4)  # fmt: skip
    head = TextToLatent(config, decoder).eval()
    library = np.random.default_rng(0).integers(0, 2, (20, *decoder.latent_spec.shape), dtype=np.uint8)
    export_bundle(decoder, text_model_parts(head), tmp_path, ExportConfig(fp16=False, int8=False, seed=0),
                  library=LatentLibraryInput(pack_bits(library), np.arange(20)))  # fmt: skip
    retrieved = OnnxGenerator(tmp_path, device="cpu").generate_bits(["a red circle", "a blue square"], mode="retrieve").bits
    rows = {row.tobytes() for row in library}
    assert retrieved.shape == (2, *decoder.latent_spec.shape)
    assert all(row.tobytes() in rows for row in retrieved)  # library latents, found by the render codes
