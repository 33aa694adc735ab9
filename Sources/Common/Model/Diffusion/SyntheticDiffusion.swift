#if canImport(Glibc)
import Glibc
#endif

/// A synthetic diffusers transformer checkpoint: the real tensor names and config keys of FLUX.1, SANA or PixArt-Σ
/// with the widths scaled down and few blocks (for tests and examples; `qsynth --family flux|sana|pixart`).
public struct SyntheticDiffusionConfig: Sendable, Equatable {
    public enum Family: String, Sendable, CaseIterable { case flux, sana, pixart }

    public var family: Family
    public var heads: Int
    public var headDim: Int
    /// Dual-stream (FLUX) or all (SANA, PixArt) blocks.
    public var layers: Int
    /// FLUX single-stream blocks.
    public var singleLayers: Int
    public var dtype: DType
    public var seed: UInt64
    /// Write a pipeline root (`model_index.json` + `transformer/`) instead of the transformer directory.
    public var pipeline = false

    public init(family: Family, heads: Int, headDim: Int, layers: Int, singleLayers: Int = 0, dtype: DType = .bf16, seed: UInt64 = 0) {
        self.family = family
        self.heads = heads
        self.headDim = headDim
        self.layers = layers
        self.singleLayers = singleLayers
        self.dtype = dtype
        self.seed = seed
    }

    /// The default small model of each family: FLUX d = 128 (2 + 2 blocks), SANA d = 320 (2 blocks; q/k/v pad to
    /// 384 in Nunchaku), PixArt d = 128 (2 blocks). Every K is a multiple of 64.
    public static func tiny(_ family: Family) -> SyntheticDiffusionConfig {
        switch family {
        case .flux: SyntheticDiffusionConfig(family: .flux, heads: 4, headDim: 32, layers: 2, singleLayers: 2)
        case .sana: SyntheticDiffusionConfig(family: .sana, heads: 10, headDim: 32, layers: 2)
        case .pixart: SyntheticDiffusionConfig(family: .pixart, heads: 4, headDim: 32, layers: 2)
        }
    }

    public var hidden: Int { heads * headDim }

    /// Why it cannot be written, or nil.
    public var problem: String? {
        if heads <= 0 || headDim <= 0 || layers <= 0 || singleLayers < 0 { return "sizes must be positive" }
        if family == .flux && headDim % 32 != 0 { return "FLUX's head dim must be a multiple of 32 (RoPE axes)" }
        if ![DType.f32, .f16, .bf16].contains(dtype) { return "dtype must be F32, F16 or BF16" }
        return nil
    }

    var torchDType: JSONValue {
        switch dtype {
        case .f32: "float32"
        case .f16: "float16"
        default: "bfloat16"
        }
    }

    /// The transformer's config.json, with the keys diffusers writes for the real model.
    public var configJSON: JSONValue {
        let d = hidden
        var o = JSONObject()
        switch family {
        case .flux:
            o.members = [("_class_name", "FluxTransformer2DModel"), ("_diffusers_version", "0.30.0.dev0"),
                         ("attention_head_dim", .int(headDim)), ("axes_dims_rope", [.int(headDim / 8), .int((headDim - headDim / 8) / 2), .int((headDim - headDim / 8) / 2)]),
                         ("guidance_embeds", true), ("in_channels", 16), ("joint_attention_dim", .int(d / 2)), ("num_attention_heads", .int(heads)),
                         ("num_layers", .int(layers)), ("num_single_layers", .int(singleLayers)), ("patch_size", 1), ("pooled_projection_dim", .int(d / 4))]
        case .sana:
            o.members = [("_class_name", "SanaTransformer2DModel"), ("_diffusers_version", "0.32.0.dev0"), ("attention_bias", false),
                         ("attention_head_dim", .int(headDim)), ("caption_channels", .int(d * 2 / 5)), ("cross_attention_dim", .int(d)),
                         ("cross_attention_head_dim", .int(headDim * 2)), ("dropout", 0.0), ("in_channels", 8), ("mlp_ratio", 2.4),
                         ("norm_elementwise_affine", false), ("norm_eps", 1e-06), ("num_attention_heads", .int(heads)),
                         ("num_cross_attention_heads", .int(heads / 2)), ("num_layers", .int(layers)), ("out_channels", 8), ("patch_size", 1),
                         ("sample_size", 16)]
        case .pixart:
            o.members = [("_class_name", "PixArtTransformer2DModel"), ("_diffusers_version", "0.28.0.dev0"), ("activation_fn", "gelu-approximate"),
                         ("attention_bias", true), ("attention_head_dim", .int(headDim)), ("attention_type", "default"),
                         ("caption_channels", .int(d * 3 / 4)), ("cross_attention_dim", .int(d)), ("double_self_attention", false), ("dropout", 0.0),
                         ("in_channels", 4), ("interpolation_scale", 2), ("norm_elementwise_affine", false), ("norm_eps", 1e-06),
                         ("norm_num_groups", 32), ("norm_type", "ada_norm_single"), ("num_attention_heads", .int(heads)),
                         ("num_embeds_ada_norm", 1000), ("num_layers", .int(layers)), ("only_cross_attention", false), ("out_channels", 8),
                         ("patch_size", 2), ("sample_size", 16), ("upcast_attention", false), ("use_additional_conditions", false),
                         ("use_linear_projection", false)]
        }
        return .object(o)
    }

    /// The pipeline's model_index.json (a pipeline root only).
    public var modelIndexJSON: JSONValue {
        let pipelineClass = switch family {
        case .flux: "FluxPipeline"
        case .sana: "SanaPipeline"
        case .pixart: "PixArtSigmaPipeline"
        }
        return .object(JSONObject([("_class_name", .string(pipelineClass)), ("_diffusers_version", "0.32.0"),
                                   ("transformer", ["diffusers", .string(configJSON["_class_name"]!.stringValue!)])]))
    }

    /// Every tensor (diffusers names and shapes) with how its values are made; a 1×1 convolution's values are made
    /// as the `[N, K]` matrix they are.
    var tensors: [(spec: TensorSpec, make: SyntheticTensor)] {
        let d = hidden, dt = dtype
        var out: [(TensorSpec, SyntheticTensor)] = []
        func add(_ name: String, _ shape: [Int], _ kind: SyntheticTensor.Kind, values: [Int]? = nil) {
            out.append((TensorSpec(name: name, dtype: dt, shape: shape), SyntheticTensor(name: name, dtype: dt, shape: values ?? shape, kind: kind)))
        }
        func linear(_ p: String, _ n: Int, _ k: Int, input: String, bias: Bool = true, conv: Bool = false) {
            add(p + ".weight", conv ? [n, k, 1, 1] : [n, k], .linear(outliers: input), values: conv ? [n, k] : nil)
            if bias { add(p + ".bias", [n], .bias) }
        }
        switch family {
        case .flux:
            let mlp = 4 * d, joint = d / 2, pooled = d / 4, inC = 16
            linear("x_embedder", d, inC, input: "latents")
            linear("context_embedder", d, joint, input: "t5")
            for e in ["timestep_embedder", "guidance_embedder"] {
                linear("time_text_embed.\(e).linear_1", d, 256, input: e)
                linear("time_text_embed.\(e).linear_2", d, d, input: e + "2")
            }
            linear("time_text_embed.text_embedder.linear_1", d, pooled, input: "clip")
            linear("time_text_embed.text_embedder.linear_2", d, d, input: "clip2")
            for i in 0..<layers {
                let p = "transformer_blocks.\(i)"
                linear(p + ".norm1.linear", 6 * d, d, input: "temb")
                linear(p + ".norm1_context.linear", 6 * d, d, input: "temb")
                for x in ["to_q", "to_k", "to_v"] { linear(p + ".attn." + x, d, d, input: p + "img") }
                add(p + ".attn.norm_q.weight", [headDim], .norm)
                add(p + ".attn.norm_k.weight", [headDim], .norm)
                for x in ["add_q_proj", "add_k_proj", "add_v_proj"] { linear(p + ".attn." + x, d, d, input: p + "txt") }
                add(p + ".attn.norm_added_q.weight", [headDim], .norm)
                add(p + ".attn.norm_added_k.weight", [headDim], .norm)
                linear(p + ".attn.to_out.0", d, d, input: p + "o")
                linear(p + ".attn.to_add_out", d, d, input: p + "ao")
                linear(p + ".ff.net.0.proj", mlp, d, input: p + "ff")
                linear(p + ".ff.net.2", d, mlp, input: p + "ffd")
                linear(p + ".ff_context.net.0.proj", mlp, d, input: p + "cff")
                linear(p + ".ff_context.net.2", d, mlp, input: p + "cffd")
            }
            for i in 0..<singleLayers {
                let p = "single_transformer_blocks.\(i)"
                linear(p + ".norm.linear", 3 * d, d, input: "temb")
                linear(p + ".proj_mlp", mlp, d, input: p + "x")
                linear(p + ".proj_out", d, d + mlp, input: p + "o")
                for x in ["to_q", "to_k", "to_v"] { linear(p + ".attn." + x, d, d, input: p + "x") }
                add(p + ".attn.norm_q.weight", [headDim], .norm)
                add(p + ".attn.norm_k.weight", [headDim], .norm)
            }
            linear("norm_out.linear", 2 * d, d, input: "temb")
            linear("proj_out", inC, d, input: "final")
        case .sana:
            let h = Int(2.4 * Double(d)), crossInner = (heads / 2) * headDim * 2, caption = d * 2 / 5
            linear("patch_embed.proj", d, 8, input: "latents", conv: true)
            linear("time_embed.emb.timestep_embedder.linear_1", d, 256, input: "t")
            linear("time_embed.emb.timestep_embedder.linear_2", d, d, input: "t2")
            linear("time_embed.linear", 6 * d, d, input: "temb")
            linear("caption_projection.linear_1", d, caption, input: "caption")
            linear("caption_projection.linear_2", d, d, input: "caption2")
            add("caption_norm.weight", [d], .norm)
            for i in 0..<layers {
                let p = "transformer_blocks.\(i)"
                add(p + ".scale_shift_table", [6, d], .embedding)
                for x in ["to_q", "to_k", "to_v"] { linear(p + ".attn1." + x, d, d, input: p + "x", bias: false) }
                linear(p + ".attn1.to_out.0", d, d, input: p + "o")
                linear(p + ".attn2.to_q", crossInner, d, input: p + "cx")
                for x in ["to_k", "to_v"] { linear(p + ".attn2." + x, crossInner, d, input: "text") }
                linear(p + ".attn2.to_out.0", d, crossInner, input: p + "co")
                linear(p + ".ff.conv_inverted", 2 * h, d, input: p + "ff", conv: true)
                add(p + ".ff.conv_depth.weight", [2 * h, 1, 3, 3], .embedding)
                add(p + ".ff.conv_depth.bias", [2 * h], .bias)
                linear(p + ".ff.conv_point", d, h, input: p + "ffd", bias: false, conv: true)
            }
            add("scale_shift_table", [2, d], .embedding)
            linear("proj_out", 8, d, input: "final")
        case .pixart:
            let mlp = 4 * d, caption = d * 3 / 4
            add("pos_embed.proj.weight", [d, 4, 2, 2], .embedding)
            add("pos_embed.proj.bias", [d], .bias)
            linear("adaln_single.emb.timestep_embedder.linear_1", d, 256, input: "t")
            linear("adaln_single.emb.timestep_embedder.linear_2", d, d, input: "t2")
            linear("adaln_single.linear", 6 * d, d, input: "temb")
            linear("caption_projection.linear_1", d, caption, input: "caption")
            linear("caption_projection.linear_2", d, d, input: "caption2")
            for i in 0..<layers {
                let p = "transformer_blocks.\(i)"
                add(p + ".scale_shift_table", [6, d], .embedding)
                for x in ["to_q", "to_k", "to_v"] { linear(p + ".attn1." + x, d, d, input: p + "x") }
                linear(p + ".attn1.to_out.0", d, d, input: p + "o")
                linear(p + ".attn2.to_q", d, d, input: p + "cx")
                for x in ["to_k", "to_v"] { linear(p + ".attn2." + x, d, d, input: "text") }
                linear(p + ".attn2.to_out.0", d, d, input: p + "co")
                linear(p + ".ff.net.0.proj", mlp, d, input: p + "ff")
                linear(p + ".ff.net.2", d, mlp, input: p + "ffd")
            }
            add("scale_shift_table", [2, d], .embedding)
            linear("proj_out", 32, d, input: "final")
        }
        return out
    }

    /// Total parameters.
    public var parameterCount: Int { tensors.reduce(0) { $0 + (elementCount($1.spec.shape) ?? 0) } }
}

extension SyntheticCheckpoint {
    /// Writes a synthetic diffusers transformer (`config.json` + `diffusion_pytorch_model.safetensors`, sharded with
    /// its index past `maxShardSize`), or a pipeline root holding it in `transformer/`, atomically. Same config,
    /// same bytes, whatever the thread count.
    public static func write(diffusion config: SyntheticDiffusionConfig, to directory: String, maxShardSize: Int = defaultMaxShardSize,
                             threads: Int = 0) throws {
        if let p = config.problem { throw SyntheticError.invalidConfig(p) }
        let out = try OutputDirectory(path: directory)
        var dir = out.stagingPath
        if config.pipeline {
            try writeSmallFile(out.stagedPath("model_index.json"), config.modelIndexJSON.serialized(indent: 2) + "\n")
            dir += "/transformer"
            guard mkdir(dir, 0o755) == 0 else { throw IOError.cannotCreate(path: dir, errno: errno) }
        }
        try writeSmallFile(dir + "/config.json", config.configJSON.serialized(indent: 2) + "\n")
        let tensors = config.tensors
        let writer = try ShardedSafetensorsWriter(directory: dir, tensors: tensors.map(\.spec), metadata: [(key: "format", value: "pt")],
                                                  maxShardSize: maxShardSize, prefix: "diffusion_pytorch_model")
        try stream(tensors.map(\.make), seed: config.seed, threads: threads, sink: { try writer.write($0) }, progress: { _ in })
        try writer.finish()
        try out.commit()
    }
}
