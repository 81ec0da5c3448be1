"""ONNX export of encoder-decoder models (T5, FLAN-T5, BART): two graphs, as optimum and transformers.js lay them out.

`encoder_model.onnx` runs the encoder once per prompt and returns what every decoder layer attends to: the
cross-attention keys and values (`present.{i}.encoder.key/value`). `decoder_model.onnx` takes one chunk of
decoder tokens, the encoder's attention mask, the decoder's self-attention cache so far and those
cross-attention keys/values unchanged, and returns logits and the grown self-attention cache. The names,
shapes and the runtime's loop are what serve/decode-models.ts relies on (and `export --help` lists); engine/export.py
chooses this path for configs with `is_encoder_decoder` and runs the same parity check as for decoder-only.
"""

from pathlib import Path

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"


def encoder_io_names(num_layers: int) -> tuple[list[str], list[str]]:
    outputs = [f"present.{i}.encoder.{kind}" for i in range(num_layers) for kind in ("key", "value")]
    return ["input_ids", "attention_mask"], outputs


def decoder_io_names(num_layers: int) -> tuple[list[str], list[str]]:
    """Per layer the self-attention past, then the cross-attention keys/values, as transformers.js orders them."""
    past = [
        f"past_key_values.{i}.{part}.{kind}" for i in range(num_layers) for part in ("decoder", "encoder") for kind in ("key", "value")
    ]
    present = [f"present.{i}.decoder.{kind}" for i in range(num_layers) for kind in ("key", "value")]
    return ["input_ids", "encoder_attention_mask", *past], ["logits", *present]


def seq2seq_io_shapes(shape: dict) -> tuple[dict, dict, dict, dict]:
    """Symbolic shapes of both graphs' inputs and outputs, as the manifest records them:
    (encoder inputs, encoder outputs, decoder inputs, decoder outputs)."""
    heads, head_dim = shape["numKeyValueHeads"], shape["headDim"]
    cross = ["batch_size", heads, "encoder_sequence_length", head_dim]
    encoder_inputs, encoder_outputs = encoder_io_names(shape["numLayers"])
    decoder_inputs, decoder_outputs = decoder_io_names(shape["numLayers"])
    encoder_input_shapes = {name: ["batch_size", "encoder_sequence_length"] for name in encoder_inputs}
    encoder_output_shapes = {name: cross for name in encoder_outputs}
    decoder_input_shapes = {
        "input_ids": ["batch_size", "sequence_length"],
        "encoder_attention_mask": ["batch_size", "encoder_sequence_length"],
    }
    for name in decoder_inputs[2:]:
        decoder_input_shapes[name] = ["batch_size", heads, "past_sequence_length", head_dim] if ".decoder." in name else cross
    decoder_output_shapes = {"logits": ["batch_size", "sequence_length", shape["vocabSize"]]}
    decoder_output_shapes.update({name: ["batch_size", heads, "total_sequence_length", head_dim] for name in decoder_outputs[1:]})
    return encoder_input_shapes, encoder_output_shapes, decoder_input_shapes, decoder_output_shapes


def cross_attention_encoder(model):
    """Prompt ids and mask -> each decoder layer's cross-attention keys and values.

    Generic for T5 and BART: run the encoder, then the decoder stack one step on the decoder start token
    with an empty cache and read the cross-attention cache that step filled. The exporter drops what the
    outputs do not depend on (the decoder's self-attention, feed-forward layers, lm_head), so the graph holds
    the encoder and the cross-attention key/value projections only.
    """
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    from engine.models import decoder_start_token_id

    start_id = decoder_start_token_id(model)

    class CrossAttentionEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            encoded = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            cache = EncoderDecoderCache(DynamicCache(config=self.model.config), DynamicCache(config=self.model.config))
            start = torch.full_like(input_ids[:, :1], start_id)
            self.model.get_decoder()(
                input_ids=start, encoder_hidden_states=encoded, encoder_attention_mask=attention_mask, cache=cache, use_cache=True
            )
            return tuple(tensor for layer in cache.cross_attention_cache.layers for tensor in (layer.keys, layer.values))

    return CrossAttentionEncoder().eval()  # a new Module trains; eval keeps dropout off (see flat_cache_decoder)


def flat_cache_seq2seq_decoder(model):
    """The decoder as a function of flat tensors, the cross-attention keys/values given rather than computed.

    An EncoderDecoderCache built with a non-empty cross-attention cache marks every layer `is_updated`, so
    T5Attention and BartAttention reuse those keys/values and never project encoder states. The decoder stack
    still branches on `encoder_hidden_states is not None` (to run cross-attention at all) and sizes the
    encoder mask from it, so it gets a stand-in made from the encoder mask: its shape follows the inputs
    inside the graph, and its values are never read.
    """
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    hidden_size = model.config.d_model

    class FlatCacheSeq2SeqDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, encoder_attention_mask, *past):
            config = self.model.config
            self_attention = DynamicCache(list(zip(past[0::4], past[1::4])), config=config)
            cross_attention = DynamicCache(list(zip(past[2::4], past[3::4])), config=config)
            cache = EncoderDecoderCache(self_attention, cross_attention)
            stand_in = encoder_attention_mask[:, :, None].expand(-1, -1, hidden_size).to(torch.float32)
            outputs = self.model(
                encoder_outputs=(stand_in,),
                attention_mask=encoder_attention_mask,
                decoder_input_ids=input_ids,
                cache=cache,
                use_cache=True,
            )
            presents = [tensor for layer in cache.self_attention_cache.layers for tensor in (layer.keys, layer.values)]
            return (outputs.logits, *presents)

    return FlatCacheSeq2SeqDecoder().eval()


def seq2seq_cache_shape(model) -> dict:
    """Decoder layers, heads and head size read off the cross-attention cache of a one-token prompt, not the
    config: T5 keeps its head size in `d_kv` and BART its decoder depth in `decoder_layers`, and
    `num_hidden_layers` means the encoder's there."""
    import torch

    with torch.no_grad():
        cross = cross_attention_encoder(model)(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long))
    return {
        "numLayers": len(cross) // 2,
        "numKeyValueHeads": cross[0].shape[1],
        "headDim": cross[0].shape[3],
        "vocabSize": model.get_output_embeddings().weight.shape[0],
    }


def export_seq2seq_onnx(model, destination: Path, shape: dict) -> None:
    """Both graphs into `destination`, each traced with lengths that differ from one another (batch 2, prompt
    5, past 2, new chunk 3, cross-attention over 6) so that no length is baked in as a constant."""
    import torch

    from engine.export import OPSET, gather_external_data, tracer_warnings_silenced

    layers, heads, head_dim, vocab = shape["numLayers"], shape["numKeyValueHeads"], shape["headDim"], shape["vocabSize"]
    batch, prompt_length, past_length, new_length, encoder_length = 2, 5, 2, 3, 6

    encoder_inputs, encoder_outputs = encoder_io_names(layers)
    encoder_axes = {name: {0: "batch_size", 1: "encoder_sequence_length"} for name in encoder_inputs}
    encoder_axes.update({name: {0: "batch_size", 2: "encoder_sequence_length"} for name in encoder_outputs})
    encoder_dummy = (torch.randint(0, vocab, (batch, prompt_length)), torch.ones(batch, prompt_length, dtype=torch.long))

    decoder_inputs, decoder_outputs = decoder_io_names(layers)
    decoder_axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "encoder_attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    past = []
    for name in decoder_inputs[2:]:
        self_attention = ".decoder." in name
        decoder_axes[name] = {0: "batch_size", 2: "past_sequence_length" if self_attention else "encoder_sequence_length"}
        past.append(torch.randn(batch, heads, past_length if self_attention else encoder_length, head_dim))
    decoder_axes.update({name: {0: "batch_size", 2: "total_sequence_length"} for name in decoder_outputs[1:]})
    decoder_dummy = (
        torch.randint(0, vocab, (batch, new_length)),
        torch.ones(batch, encoder_length, dtype=torch.long),
        *past,
    )

    graphs = [
        (ENCODER_FILE, cross_attention_encoder(model), encoder_dummy, encoder_inputs, encoder_outputs, encoder_axes),
        (DECODER_FILE, flat_cache_seq2seq_decoder(model), decoder_dummy, decoder_inputs, decoder_outputs, decoder_axes),
    ]
    for file_name, module, dummy, input_names, output_names, dynamic_axes in graphs:
        # Each graph in a folder of its own first: over 2 GB the exporter writes a file per tensor beside it.
        folder = destination / f".{file_name}"
        folder.mkdir()
        with torch.no_grad(), tracer_warnings_silenced():
            torch.onnx.export(
                module,
                dummy,
                str(folder / file_name),
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=False,  # as for decoder-only: no second, transposed copy of tied embeddings
            )
        assert not model.training, "the exporter left dropout on"
        gather_external_data(folder, file_name, f"{file_name}_data")
        for path in folder.iterdir():
            path.rename(destination / path.name)
        folder.rmdir()


def onnx_seq2seq_greedy_batch(
    encoder_session, decoder_session, prompts: list[list[int]], shape: dict, max_new_tokens: int, eos_ids: set[int],
    decoder_start_id: int, pad_id: int,
) -> list[list[int]]:
    """Greedy decoding as the Node runtime does it: prompts right-padded with the pad id (mask 0), the encoder
    once, then every row one decoder token per step from the decoder start; a finished row keeps stepping
    with the pad id and its output is ignored. Each row's tokens end with its eos, if it reached one."""
    import numpy as np

    width = max(len(prompt) for prompt in prompts)
    input_ids = np.array([prompt + [pad_id] * (width - len(prompt)) for prompt in prompts], dtype=np.int64)
    attention_mask = np.array([[1] * len(prompt) + [0] * (width - len(prompt)) for prompt in prompts], dtype=np.int64)
    cross = encoder_session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})

    decoder_inputs = decoder_io_names(shape["numLayers"])[0]
    empty = np.zeros((len(prompts), shape["numKeyValueHeads"], 0, shape["headDim"]), dtype=np.float32)
    self_attention = [empty] * (2 * shape["numLayers"])
    next_ids = np.full((len(prompts), 1), decoder_start_id, dtype=np.int64)
    generated: list[list[int]] = [[] for _ in prompts]
    finished = [False] * len(prompts)
    for _ in range(max_new_tokens):
        past = []  # per layer: self-attention key, value, then cross-attention key, value
        for layer in range(shape["numLayers"]):
            past += [*self_attention[2 * layer : 2 * layer + 2], *cross[2 * layer : 2 * layer + 2]]
        feed = {"input_ids": next_ids, "encoder_attention_mask": attention_mask, **dict(zip(decoder_inputs[2:], past))}
        logits, *self_attention = decoder_session.run(None, feed)
        tokens = logits[:, -1].argmax(-1)
        for row, token in enumerate(tokens.tolist()):
            if not finished[row]:
                generated[row].append(token)
                finished[row] = token in eos_ids
        if all(finished):
            break
        next_ids = np.array([[pad_id if done else token] for done, token in zip(finished, tokens.tolist())], dtype=np.int64)
    return generated


def onnx_seq2seq_greedy(
    encoder_session, decoder_session, prompt_ids: list[int], shape: dict, max_new_tokens: int, eos_ids: set[int],
    decoder_start_id: int, pad_id: int,
) -> list[int]:
    return onnx_seq2seq_greedy_batch(
        encoder_session, decoder_session, [prompt_ids], shape, max_new_tokens, eos_ids, decoder_start_id, pad_id
    )[0]
