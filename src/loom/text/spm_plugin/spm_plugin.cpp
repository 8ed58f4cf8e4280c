// libloom_spm.so — a C ABI around Debian's libsentencepiece, loaded by loom into a link
// namespace of its own (dlmopen) so that the protobuf-lite copy inside libsentencepiece never
// meets the protobuf that libtorch loads (see CMakeLists.txt). Only plain C types cross the boundary.
// Strings returned to the caller are written into caller-provided buffers; every function
// returns a negative value on failure and never throws.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using sentencepiece::SentencePieceProcessor;

// Copies s into buf (cap bytes) and returns its length; the caller retries with a bigger buffer
// when the return value exceeds cap.
long copy_out(const std::string& s, char* buf, long cap) {
  if (buf && cap > 0) std::memcpy(buf, s.data(), std::min<long>(cap, static_cast<long>(s.size())));
  return static_cast<long>(s.size());
}

}  // namespace

extern "C" {

/// ABI version of this plugin; bumped on any signature change.
int loom_spm_abi_version() { return 2; }

/// Loads a SentencePiece model from serialized bytes. Returns a handle or nullptr; on failure
/// the error text is copied into err (err_cap bytes, NUL-terminated).
void* loom_spm_load(const char* data, long size, char* err, long err_cap) {
  try {
    auto* sp = new SentencePieceProcessor();
    auto status = sp->LoadFromSerializedProto(std::string(data, static_cast<size_t>(size)));
    if (!status.ok()) {
      if (err && err_cap > 0) {
        std::string msg = status.ToString();
        std::strncpy(err, msg.c_str(), static_cast<size_t>(err_cap) - 1);
        err[err_cap - 1] = '\0';
      }
      delete sp;
      return nullptr;
    }
    return sp;
  } catch (...) {
    return nullptr;
  }
}

void loom_spm_free(void* h) { delete static_cast<SentencePieceProcessor*>(h); }

/// Number of pieces in the model's vocabulary.
long loom_spm_size(void* h) { return static_cast<SentencePieceProcessor*>(h)->GetPieceSize(); }

/// Piece string of id into buf; returns its length (or -1 if id is out of range).
long loom_spm_id_to_piece(void* h, long id, char* buf, long cap) {
  auto* sp = static_cast<SentencePieceProcessor*>(h);
  if (id < 0 || id >= sp->GetPieceSize()) return -1;
  return copy_out(sp->IdToPiece(static_cast<int>(id)), buf, cap);
}

/// Id of piece (the model's unk id when absent).
long loom_spm_piece_to_id(void* h, const char* piece, long len) {
  return static_cast<SentencePieceProcessor*>(h)->PieceToId(std::string(piece, static_cast<size_t>(len)));
}

/// Score of piece id (log probability for unigram models, merge rank for BPE).
float loom_spm_score(void* h, long id) {
  return static_cast<SentencePieceProcessor*>(h)->GetScore(static_cast<int>(id));
}

/// 1 if id is a control symbol (<s>, </s>, ...), 2 if unknown, 3 if unused, 4 if byte, else 0.
int loom_spm_type(void* h, long id) {
  auto* sp = static_cast<SentencePieceProcessor*>(h);
  if (sp->IsControl(static_cast<int>(id))) return 1;
  if (sp->IsUnknown(static_cast<int>(id))) return 2;
  if (sp->IsUnused(static_cast<int>(id))) return 3;
  if (sp->IsByte(static_cast<int>(id))) return 4;
  return 0;
}

/// Encodes text into pieces, written as consecutive NUL-terminated strings into buf. Also writes
/// the piece ids into ids (ids_cap entries). Returns the number of pieces, or -(bytes needed)
/// when buf is too small, or -1 on error. *bytes receives the bytes used in buf.
long loom_spm_encode(void* h, const char* text, long len, char* buf, long cap, long* bytes,
                     int* ids, long ids_cap) {
  try {
    auto* sp = static_cast<SentencePieceProcessor*>(h);
    std::vector<std::string> pieces;
    auto status = sp->Encode(std::string(text, static_cast<size_t>(len)), &pieces);
    if (!status.ok()) return -1;
    long need = 0;
    for (const auto& p : pieces) need += static_cast<long>(p.size()) + 1;
    *bytes = need;
    if (need > cap || static_cast<long>(pieces.size()) > ids_cap) return -2;
    long off = 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::memcpy(buf + off, pieces[i].data(), pieces[i].size());
      off += static_cast<long>(pieces[i].size());
      buf[off++] = '\0';
      ids[i] = sp->PieceToId(pieces[i]);
    }
    return static_cast<long>(pieces.size());
  } catch (...) {
    return -1;
  }
}

/// Decodes pieces (consecutive NUL-terminated strings, n of them) into text in buf; returns the
/// text length (retry with a bigger buffer when it exceeds cap), or -1 on error.
long loom_spm_decode_pieces(void* h, const char* pieces, long n, char* buf, long cap) {
  try {
    auto* sp = static_cast<SentencePieceProcessor*>(h);
    std::vector<std::string> v;
    const char* p = pieces;
    for (long i = 0; i < n; ++i) {
      v.emplace_back(p);
      p += v.back().size() + 1;
    }
    std::string out;
    if (!sp->Decode(v, &out).ok()) return -1;
    return copy_out(out, buf, cap);
  } catch (...) {
    return -1;
  }
}

/// Trains a model with SentencePieceTrainer::Train(kwargs) and returns a handle to the
/// serialized ModelProto (read it with loom_spm_bytes_size / loom_spm_bytes_copy, release it
/// with loom_spm_bytes_free), or nullptr with the error text in err. kv holds kv_len bytes of
/// NUL-terminated strings, alternating key and value (sentencepiece's trainer flag names, e.g.
/// "input", "vocab_size", "model_type"); "random_seed" seeds sentencepiece's random generator.
/// No model_prefix may be given: nothing is written to disk.
void* loom_spm_train(const char* kv, long kv_len, char* err, long err_cap) {
  auto set_err = [&](const std::string& msg) {
    if (err && err_cap > 0) {
      std::strncpy(err, msg.c_str(), static_cast<size_t>(err_cap) - 1);
      err[err_cap - 1] = '\0';
    }
  };
  try {
    std::unordered_map<std::string, std::string> kwargs;
    const char* p = kv;
    const char* end = kv + kv_len;
    while (p < end) {
      std::string key(p);
      p += key.size() + 1;
      if (p >= end) {
        set_err("training option '" + key + "' has no value");
        return nullptr;
      }
      std::string value(p);
      p += value.size() + 1;
      if (key == "random_seed") {
        sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned int>(std::stoul(value)));
        continue;
      }
      kwargs[key] = value;
    }
    auto* out = new std::string();
    auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, nullptr, out);
    if (!status.ok()) {
      set_err(status.ToString());
      delete out;
      return nullptr;
    }
    return out;
  } catch (const std::exception& e) {
    set_err(std::string("sentencepiece training failed: ") + e.what());
    return nullptr;
  } catch (...) {
    set_err("sentencepiece training failed");
    return nullptr;
  }
}

/// Size in bytes of a buffer returned by loom_spm_train.
long loom_spm_bytes_size(void* b) { return static_cast<long>(static_cast<std::string*>(b)->size()); }

/// Copies min(cap, size) bytes of a buffer returned by loom_spm_train into buf.
void loom_spm_bytes_copy(void* b, char* buf, long cap) { copy_out(*static_cast<std::string*>(b), buf, cap); }

/// Releases a buffer returned by loom_spm_train (it was allocated in the plugin's namespace).
void loom_spm_bytes_free(void* b) { delete static_cast<std::string*>(b); }

}  // extern "C"
