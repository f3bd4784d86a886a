"""Triton Python backend: prompts -> MiniLM token ids, as ``bitlatent.inference.PromptTokenizer``.

Self-contained (the Triton image has no bitlatent): ``tokenizers`` and numpy only. Each prompt
becomes [CLS] wordpieces [SEP], padded with [PAD] to ``max_length`` (a model parameter, the
bundle's ``max_prompt_tokens``), so every request has the same shape and the dynamic batcher of
``text_to_latent`` can batch them. An empty prompt, or one over ``max_length`` tokens when
``truncate`` is "false", fails its request with a clear error; the other requests go on.
"""

import json
import os

import numpy as np

try:  # inside Triton
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - tests inject a stand-in module
    pb_utils = None


def tokenize(tokenizer, prompts, max_length, pad_id, sep_id, truncate):
    """list of str -> (input_ids, attention_mask) int64 (N, max_length); ValueError on a bad prompt."""
    ids = []
    for i, prompt in enumerate(prompts):
        if not prompt.strip():
            raise ValueError(f"prompt {i} is empty or whitespace only: describe the image in words, e.g. 'a red circle'")
        tokens = tokenizer.encode(prompt).ids
        if len(tokens) > max_length:
            if not truncate:
                raise ValueError(f"prompt {i} is {len(tokens)} tokens, over the model's limit of {max_length} "
                                 "([CLS] and [SEP] included); shorten it")
            tokens = tokens[: max_length - 1] + [sep_id]
        ids.append(tokens)
    input_ids = np.full((len(ids), max_length), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), max_length), dtype=np.int64)
    for i, tokens in enumerate(ids):
        input_ids[i, : len(tokens)] = tokens
        mask[i, : len(tokens)] = 1
    return input_ids, mask


class TritonPythonModel:
    def initialize(self, args):
        from tokenizers import Tokenizer

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_length = int(params.get("max_length", "48"))
        self.truncate = params.get("truncate", "false").lower() == "true"
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id = self.tokenizer.token_to_id("[PAD]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "prompt").as_numpy().reshape(-1)  # (batch,) bytes
            try:
                prompts = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in raw]
                ids, mask = tokenize(self.tokenizer, prompts, self.max_length, self.pad_id, self.sep_id, self.truncate)
            except (ValueError, UnicodeDecodeError) as error:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask)]))
        return responses

    def finalize(self):
        self.tokenizer = None
