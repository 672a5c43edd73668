"""The step profile's attribution: op_names read from HLO text, instructions XLA made itself
charged to their operands' part, and a traced tiny SSL step split into the model's parts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fastvgs_jax.models import config as model_configs
from fastvgs_jax.models import fastvgs, speech
from fastvgs_jax.train import objectives, step_profile

# HLO lines as compiled.as_text() prints them.
HLO = """
  %conv.1 = f32[4,10,8]{2,1,0} convolution(%p0, %p1), window={size=3}, metadata={op_name="jit(f)/jvp(M)/speech_encoder/frontend/conv_1/conv_general_dilated"}
  %transpose_copy_fusion.2 = f32[8,10,4]{2,1,0} fusion(%conv.1), kind=kLoop, calls=%c
  %convolution-window-dilated.3 = f32[8,3,8]{2,1,0} convolution(%transpose_copy_fusion.2, %p2), window={size=10}
  %dot.4 = f32[4,8]{1,0} dot(%p3, %p4), metadata={op_name="jit(f)/transpose(jvp(M))/speech_encoder/transformer/layer_0/mlp_in/dot_general"}
  ROOT %tuple.5 = (f32[4,8]{1,0}) tuple(%dot.4)
"""  # noqa: E501


def test_op_names_come_from_metadata_or_the_nearest_named_operand():
    names = step_profile.instruction_op_names(HLO)
    assert step_profile.part_of(names["conv.1"]) == "cnn"
    assert step_profile.part_of(names["dot.4"]) == "transformer"
    # The kernel gradient XLA rewrote as a convolution, two steps from a named operand.
    assert step_profile.part_of(names["convolution-window-dilated.3"]) == "cnn"
    assert step_profile.part_of(names["transpose_copy_fusion.2"]) == "cnn"


# A while loop (its tuple type, its body's counter copy) and a copy of a parameter.
LOOP_HLO = """
%body.1 (arg.1: (s32[], f32[4])) -> (s32[], f32[4]) {
  %arg.1 = (s32[], f32[4]{0}) parameter(0)
  %gte.2 = s32[] get-tuple-element(%arg.1), index=0
  %copy.3 = s32[] copy(%gte.2)
}

ENTRY %main.9 (p0: f32[4,8], p1: f32[8,8]) -> f32[4,8] {
  %while.4 = (s32[], f32[4]{0}) while(%tuple.0), condition=%cond.1, body=%body.1, metadata={op_name="jit(f)/speech_encoder/positional_conv/while"}
  %copy.5 = f32[8,8]{0,1} copy(%p1)
  ROOT %dot.6 = f32[4,8]{1,0} dot(%p0, %copy.5), metadata={op_name="jit(f)/speech_encoder/transformer/layer_0/mlp_in/dot_general"}
}
"""  # noqa: E501


def test_unnamed_instructions_take_a_named_user_or_their_loop():
    names = step_profile.instruction_op_names(LOOP_HLO)
    assert step_profile.part_of(names["copy.3"]) == "positional_conv"
    assert step_profile.part_of(names["copy.5"]) == "transformer"


def test_parts_read_the_module_path_and_random_bits_come_first():
    part = step_profile.part_of
    assert part("jit(f)/speech_encoder/transformer/layer_0/dropout/jit(_threefry_split)") == (
        "random_bits"
    )
    assert part("jit(f)/quantizer/btgv,gvd->btgd") == "quantizer"
    assert part("jit(f)/target_projection/dot_general") == "ssl_projections"
    assert part("jit(f)/div") == step_profile.LOSS_PART


def test_a_traced_tiny_ssl_step_splits_into_the_model_parts(tmp_path):
    config = model_configs.model_config("tiny")
    config.frontend = "cnn"
    samples = 8_000
    frames = speech.frame_geometry(config).num_frames(samples)
    model = fastvgs.FaSTVGSPlus(config)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    batch = {
        "audio": jnp.asarray(np.random.default_rng(0).standard_normal((2, samples)), jnp.float32),
        "frame_mask": jnp.ones((2, frames), bool),
    }

    def loss_fn(params, batch):
        return objectives.joint_loss(
            model, params, variables["batch_stats"], batch, jax.random.key(0), 0, 0.0, vgs=False
        )

    compiled = jax.jit(jax.grad(loss_fn, has_aux=True)).lower(variables["params"], batch)
    compiled = compiled.compile()
    jax.block_until_ready(compiled(variables["params"], batch))
    with jax.profiler.trace(str(tmp_path), create_perfetto_trace=True):
        jax.block_until_ready(compiled(variables["params"], batch))
    events = step_profile.trace_events(str(tmp_path))
    names = step_profile.instruction_op_names(compiled.as_text())
    parts = step_profile.part_seconds(events, names, steps=1)
    assert {"cnn", "transformer", "quantizer"} <= set(parts), parts
    # Nearly every instruction's time is charged to a named part.
    assert parts.get("unattributed", 0.0) < 0.1 * sum(parts.values()), parts
    top = step_profile.top_instructions(events, names, steps=1, count=3)
    assert len(top) == 3 and all(t["ms"] >= 0 for t in top)
