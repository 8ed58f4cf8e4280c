#include "loom/models/model_info.h"

#include <filesystem>

#include "loom/core/error.h"
#include "loom/core/files.h"

namespace loom::models {
namespace {

int64_t linear_params(int64_t in, int64_t out, bool bias = true) { return in * out + (bias ? out : 0); }

std::string join(const std::vector<int64_t>& v) { return fmt::format("{}", fmt::join(v, ", ")); }

}  // namespace

NativeModelInfo native_model_info(const NativeSeq2SeqConfig& c) {
  NativeModelInfo info;
  info.config = c;
  auto& pc = info.params;
  const int64_t d = c.d_model;
  const int64_t e = c.is_delight() ? c.delight.emb_map_dim : d;  // table width
  pc.embeddings = c.vocab_size * e + (c.shared_vocab ? 0 : c.target_vocab_size * e);
  pc.output = c.tie_word_embeddings ? 0 : c.target_vocab_size * e;
  pc.other = c.normalize_before ? 2 * 2 * d : 0;  // final LayerNorms
  if (!c.is_delight()) {
    const int64_t ln = 2 * d;
    for (int64_t i = 0; i < c.encoder_layers; ++i) {
      BlockInfo b;
      b.parameters = 4 * linear_params(d, d) + ln + linear_params(d, c.encoder_ffn_dim) + linear_params(c.encoder_ffn_dim, d) + ln;
      info.encoder.push_back(b);
    }
    for (int64_t i = 0; i < c.decoder_layers; ++i) {
      BlockInfo b;
      b.parameters = 8 * linear_params(d, d) + 2 * ln + linear_params(d, c.decoder_ffn_dim) + linear_params(c.decoder_ffn_dim, d) + ln;
      info.decoder.push_back(b);
    }
  } else {
    const DelightSettings& s = c.delight;
    const int64_t d_o = d / 2, ln = 2 * d;
    auto gmax = [&](int64_t g) { return g > 0 ? g : nn::delight_max_groups(d); };
    info.embedding = nn::dextra_spec(s.emb_map_dim, d / 2, d, s.emb_width_mult, s.emb_depth, gmax(s.emb_max_groups));
    pc.other += 2 * info.embedding.parameter_count();              // one embedding unit per side
    if (d != s.emb_map_dim) pc.other += linear_params(d, s.emb_map_dim, false);  // output map layer
    const int64_t self_attn = linear_params(d_o, 3 * d_o) + linear_params(d_o, d);
    const int64_t cross_attn = linear_params(d, d_o) + linear_params(d, 2 * d_o) + linear_params(d_o, d);
    const nn::BlockScaling es = nn::delight_block_scaling(s.enc_min_depth, s.enc_max_depth, s.enc_blocks, s.enc_width_mult);
    const nn::BlockScaling ds = nn::delight_block_scaling(s.dec_min_depth, s.dec_max_depth, s.dec_blocks, s.dec_width_mult);
    for (int64_t i = 0; i < s.enc_blocks; ++i) {
      BlockInfo b;
      b.depth = es.depth[i];
      b.width_mult = es.width_mult[i];
      b.dextra = nn::dextra_spec(d, d / 2, d_o, b.width_mult, b.depth, gmax(s.enc_max_groups));
      const int64_t h = d / s.enc_ffn_red;
      b.parameters = b.dextra.parameter_count() + self_attn + ln + linear_params(d, h) + linear_params(h, d) + ln;
      info.encoder.push_back(b);
    }
    for (int64_t i = 0; i < s.dec_blocks; ++i) {
      BlockInfo b;
      b.depth = ds.depth[i];
      b.width_mult = ds.width_mult[i];
      b.dextra = nn::dextra_spec(d, d / 2, d_o, b.width_mult, b.depth, gmax(s.dec_max_groups));
      const int64_t h = d / s.dec_ffn_red;
      b.parameters = b.dextra.parameter_count() + self_attn + ln + cross_attn + ln + linear_params(d, h) + linear_params(h, d) + ln;
      info.decoder.push_back(b);
    }
  }
  pc.total = pc.embeddings + pc.output + pc.other;
  for (const BlockInfo& b : info.encoder) {
    pc.encoder_blocks.push_back(b.parameters);
    pc.total += b.parameters;
  }
  for (const BlockInfo& b : info.decoder) {
    pc.decoder_blocks.push_back(b.parameters);
    pc.total += b.parameters;
  }
  return info;
}

std::string format_model_info(const NativeModelInfo& info) {
  const NativeSeq2SeqConfig& c = info.config;
  std::string out = fmt::format("architecture: {} ({}), d_model {}, vocabulary {} ({})\n", c.architecture,
                                c.normalize_before ? "pre-norm" : "post-norm", c.d_model,
                                c.shared_vocab ? std::to_string(c.vocab_size)
                                               : fmt::format("{} source / {} target", c.vocab_size, c.target_vocab_size),
                                c.shared_vocab ? "shared" : "separate");
  auto spec_line = [](const nn::DExTraSpec& s) {
    std::vector<int64_t> in, o, g;
    for (const nn::GltSpec& l : s.glt) {
      in.push_back(l.in);
      o.push_back(l.out);
      g.push_back(l.groups);
    }
    return fmt::format("dense {}->{} | GLT in [{}] out [{}] groups [{}] | dense {}->{}", s.in_features, s.in_proj, join(in),
                       join(o), join(g), s.out_proj_in(), s.out_features);
  };
  if (c.is_delight()) {
    const DelightSettings& s = c.delight;
    out += fmt::format("DeLighT: map_dim {}, encoder N {}..{} over {} blocks, decoder N {}..{} over {} blocks, w_m {} / {}, "
                       "FFN d_m/{} / d_m/{}\n",
                       s.emb_map_dim, s.enc_min_depth, s.enc_max_depth, s.enc_blocks, s.dec_min_depth, s.dec_max_depth,
                       s.dec_blocks, s.enc_width_mult, s.dec_width_mult, s.enc_ffn_red, s.dec_ffn_red);
    out += fmt::format("embedding unit (x2): N {} | {} | {} params\n", info.embedding.glt.size(), spec_line(info.embedding),
                       info.embedding.parameter_count());
  } else {
    out += fmt::format("Transformer: {} encoder / {} decoder layers, {} / {} heads, FFN {} / {}\n", c.encoder_layers,
                       c.decoder_layers, c.encoder_attention_heads, c.decoder_attention_heads, c.encoder_ffn_dim,
                       c.decoder_ffn_dim);
  }
  for (auto [name, blocks] : {std::pair{"encoder", &info.encoder}, std::pair{"decoder", &info.decoder}}) {
    for (size_t i = 0; i < blocks->size(); ++i) {
      const BlockInfo& b = (*blocks)[i];
      if (c.is_delight()) {
        out += fmt::format("{} block {}: N^b {} w_m^b {:.3f} | {} | {} params\n", name, i, b.depth, b.width_mult,
                           spec_line(b.dextra), b.parameters);
      } else {
        out += fmt::format("{} layer {}: {} params\n", name, i, b.parameters);
      }
    }
  }
  const auto& p = info.params;
  int64_t enc = 0, dec = 0;
  for (int64_t n : p.encoder_blocks) enc += n;
  for (int64_t n : p.decoder_blocks) dec += n;
  out += fmt::format("parameters: total {} ({:.2f} M) | embedding tables {} | output projection {} | encoder blocks {} | "
                     "decoder blocks {} | other (embedding units, output map, final norms) {}\n",
                     p.total, static_cast<double>(p.total) / 1e6, p.embeddings, p.output, enc, dec, p.other);
  return out;
}

NativeSeq2SeqConfig read_native_config(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "config.json").string();
  if (!std::filesystem::is_regular_file(file)) fail(Where{file, 0, ""}, "no such config file");
  return NativeSeq2SeqConfig::from_json(core::read_json(file), file);
}

}  // namespace loom::models
