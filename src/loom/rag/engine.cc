#include "loom/rag/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/paths.h"
#include "loom/core/progress.h"
#include "loom/rag/analyzer.h"

namespace loom::rag {
namespace fs = std::filesystem;
namespace {

uint64_t fnv(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string join_terms(const std::vector<std::string>& t) {
  std::string out;
  for (const auto& x : t) out += (out.empty() ? "" : " ") + x;
  return out;
}

bool wanted_extension(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e == ".txt" || e == ".text" || e == ".md" || e == ".markdown" || e == ".html" || e == ".htm" ||
         e == ".jsonl" || e == ".pdf";
}

std::vector<std::vector<float>> embed_texts(const models::SentenceEmbedder* e, const std::vector<std::string>& texts,
                                            int64_t batch) {
  std::vector<std::vector<float>> out;
  if (!e || texts.empty()) return out;
  const torch::Tensor v = e->embed(texts, batch).contiguous();  // [N, d_model]
  const int64_t d = v.size(1);
  const float* p = v.data_ptr<float>();
  for (int64_t i = 0; i < v.size(0); ++i) out.emplace_back(p + i * d, p + (i + 1) * d);
  return out;
}

// Index-wide settings check: records them on first use, refuses a mismatch naming both.
void check_setting(Store& s, const std::string& dir, const std::string& key, const std::string& value,
                   const std::string& what) {
  const std::string have = s.setting(key);
  if (have.empty()) {
    s.set_setting(key, value);
  } else if (have != value) {
    fail(Where{dir, 0, key}, "index was built with {} {}; this run asks for {} — use the same, or a new --index",
         what, have, value);
  }
}

}  // namespace

std::string chunk_id(const std::string& source, int64_t seq) { return fmt::format("{:016x}-{}", fnv(source), seq); }

std::string default_tokenizer_dir() { return (core::data_dir() / "tokenizers" / "bert-base-uncased").string(); }

nlohmann::json IngestSummary::to_json() const {
  nlohmann::json sk = nlohmann::json::array();
  for (const auto& s : skipped) sk.push_back({{"path", s.path}, {"reason", s.reason}});
  return {{"files_seen", files_seen}, {"files_ingested", files_ingested}, {"files_unchanged", files_unchanged},
          {"files_removed", files_removed}, {"documents", documents}, {"chunks", chunks}, {"tokens", tokens},
          {"seconds", seconds}, {"docs_per_s", seconds > 0 ? static_cast<double>(documents) / seconds : 0.0},
          {"skipped", sk}};
}

IngestSummary ingest(const std::string& index_dir, const std::vector<std::string>& inputs,
                     const IngestOptions& o, std::FILE* log) {
  const auto t0 = std::chrono::steady_clock::now();
  IngestSummary sum;
  // Collect files first (sorted, so runs are deterministic).
  std::vector<std::string> files;
  for (const auto& in : inputs) {
    const fs::path p = fs::absolute(in).lexically_normal();
    if (fs::is_directory(p)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied);
           it != fs::recursive_directory_iterator(); ++it)
        if (it->is_regular_file() && wanted_extension(it->path())) found.push_back(it->path().string());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p.string());
    } else {
      fail(Where{in}, "no such file or directory");
    }
  }
  auto store = open_sqlite_store(index_dir, true);
  std::shared_ptr<models::SentenceEmbedder> embedder;
  std::string tok_dir = o.embed_dir.empty() ? default_tokenizer_dir() : o.embed_dir;
  if (!o.embed_dir.empty()) {
    embedder = models::SentenceEmbedder::load(o.embed_dir);
    if (o.chunk.max_tokens > embedder->max_seq_length() - 2)
      fail(Where{"", 0, "--max-tokens"}, "chunk budget {} exceeds the embedding model's max_seq_length {} - 2",
           o.chunk.max_tokens, embedder->max_seq_length());
  }
  const std::string model_name = embedder ? embedder->fingerprint() : std::string("none (BM25 only)");
  const std::string have_model = store->setting("embed_model");
  if (!have_model.empty() && have_model != model_name)
    fail(Where{index_dir, 0, "embed_model"}, "index was built with embedding model {}; this run uses {} (pass the same --embed, or a new --index)",
         have_model, model_name);
  const auto tok = text::WordPieceTokenizer::load(tok_dir);
  check_setting(*store, index_dir, "chunk", fmt::format("max_tokens={} overlap={}", o.chunk.max_tokens, o.chunk.overlap_tokens),
                "chunk settings");
  check_setting(*store, index_dir, "text_field", o.extract.text_field, "--text-field");
  if (have_model.empty()) {
    store->set_setting("embed_model", model_name);
    store->set_setting("embed_dir", embedder ? fs::absolute(o.embed_dir).lexically_normal().string() : "");
    store->set_setting("tokenizer_dir", fs::absolute(tok_dir).lexically_normal().string());
  }

  int64_t total_bytes = 0, done_bytes = 0;
  for (const auto& f : files) {
    std::error_code ec;
    total_bytes += static_cast<int64_t>(fs::file_size(f, ec));
  }
  core::Progress progress(log, core::Progress::Options{o.progress && core::is_terminal(log), 0.25, total_bytes, 0});
  std::set<std::string> seen;
  for (const auto& file : files) {
    ++sum.files_seen;
    seen.insert(file);
    std::error_code ec;
    const int64_t size = static_cast<int64_t>(fs::file_size(file, ec));
    const std::string bytes = core::read_file(file);
    const std::string hash = fmt::format("{:016x}", fnv(bytes));
    if (store->file_hash(file) == hash) {
      ++sum.files_unchanged;
    } else {
      Skipped skipped;
      const auto docs = extract_file(file, o.extract, &skipped);
      if (docs.empty()) {
        sum.skipped.push_back(skipped);
      } else {
        std::vector<DocRecord> drecs;
        std::vector<ChunkRecord> crecs;
        std::vector<std::string> texts;
        for (const auto& d : docs) {
          DocRecord dr;
          dr.source = d.source;
          dr.file = file;
          dr.title = d.title;
          dr.hash = hash;
          dr.meta = d.meta;
          dr.meta["path"] = file;
          drecs.push_back(dr);
          int64_t seq = 0;
          for (auto& c : chunk_document(d, tok, o.chunk)) {
            ChunkRecord r;
            r.id = chunk_id(d.source, seq);
            r.source = d.source;
            r.title = d.title;
            r.seq = seq++;
            r.begin = static_cast<int64_t>(c.begin);
            r.end = static_cast<int64_t>(c.end);
            r.heading_path = c.heading_path;
            r.n_tokens = c.n_tokens;
            r.terms = join_terms(search_terms(d.title + "\n" + c.heading_path + "\n" + c.text));
            r.text = std::move(c.text);
            sum.tokens += r.n_tokens;
            texts.push_back(r.text);
            crecs.push_back(std::move(r));
          }
        }
        const auto vecs = embed_texts(embedder.get(), texts, o.batch_size);
        store->replace_file(file, hash, drecs, crecs, vecs);
        ++sum.files_ingested;
        sum.documents += static_cast<int64_t>(drecs.size());
        sum.chunks += static_cast<int64_t>(crecs.size());
      }
    }
    done_bytes += size;
    progress.update(done_bytes, fmt::format("ingest: {} files, {} chunks", sum.files_seen, sum.chunks));
  }
  if (o.prune) {
    for (const auto& f : store->files())
      if (!seen.count(f)) {
        store->remove_file(f);
        ++sum.files_removed;
      }
  }
  if (embedder && store->stats()["vectors"].get<int64_t>() > 0) VectorIndex::open(index_dir, *store, true);
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  progress.finish(fmt::format("ingest: {} files ({} new or changed, {} unchanged, {} skipped, {} removed), {} documents, {} chunks, {} tokens, {:.1f} docs/s",
                              sum.files_seen, sum.files_ingested, sum.files_unchanged, sum.skipped.size(), sum.files_removed,
                              sum.documents, sum.chunks, sum.tokens,
                              sum.seconds > 0 ? static_cast<double>(sum.documents) / sum.seconds : 0.0));
  return sum;
}

Mode parse_mode(const std::string& s) {
  if (s == "bm25") return Mode::kBm25;
  if (s == "dense") return Mode::kDense;
  if (s == "hybrid") return Mode::kHybrid;
  fail(Where{"", 0, "--mode"}, "expected bm25, dense or hybrid, got \"{}\"", s);
}

const char* mode_name(Mode m) { return m == Mode::kBm25 ? "bm25" : m == Mode::kDense ? "dense" : "hybrid"; }

nlohmann::json Hit::to_json() const {
  return {{"id", chunk.id}, {"source", chunk.source}, {"title", chunk.title}, {"heading_path", chunk.heading_path},
          {"begin", chunk.begin}, {"end", chunk.end}, {"text", chunk.text}, {"meta", chunk.meta}, {"score", score},
          {"bm25", {{"rank", bm25_rank}, {"score", bm25_score}}}, {"dense", {{"rank", dense_rank}, {"score", dense_score}}}};
}

Retriever::Retriever(const std::string& index_dir, const std::string& embed_dir) : dir_(index_dir) {
  store_ = open_sqlite_store(index_dir, false);
  const std::string model = store_->setting("embed_model");
  std::string use = embed_dir.empty() ? store_->setting("embed_dir") : embed_dir;
  if (!use.empty()) {
    embedder_ = models::SentenceEmbedder::load(use);
    if (embedder_->fingerprint() != model)
      fail(Where{index_dir, 0, "embed_model"}, "index was built with embedding model {}; --embed {} is {}", model, use,
           embedder_->fingerprint());
  }
}

std::vector<Hit> Retriever::search(const std::string& query, int64_t k, Mode mode, const Filter& filter) {
  const auto terms = search_terms(query);
  if (terms.empty() && mode != Mode::kDense)
    fail(Where{"", 0, "question"}, "the question has no words loom can search (letters or digits of a supported script): \"{}\"", query);
  if (mode != Mode::kBm25 && !embedder_)
    fail(Where{dir_, 0, "--mode"}, "mode {} needs vectors, but this index has none (ingest with --embed DIR)", mode_name(mode));
  const int64_t depth = mode == Mode::kHybrid ? std::max<int64_t>(k * 4, 50) : k;
  std::vector<ScoredRow> bm, dn;
  if (mode != Mode::kDense) bm = store_->bm25(terms, depth, filter);
  if (mode != Mode::kBm25) {
    const torch::Tensor q = embedder_->embed({query});
    std::vector<float> qv(q.data_ptr<float>(), q.data_ptr<float>() + q.size(1));
    if (!filter.empty()) {
      dn = exact_filtered_search(*store_, qv, depth, filter);
    } else {
      if (!vectors_) vectors_ = VectorIndex::open(dir_, *store_, true);
      dn = vectors_->search(qv, depth);
    }
  }
  std::map<int64_t, Hit> by_row;
  for (size_t i = 0; i < bm.size(); ++i) {
    Hit& h = by_row[bm[i].row];
    h.bm25_rank = static_cast<int64_t>(i) + 1;
    h.bm25_score = bm[i].score;
  }
  for (size_t i = 0; i < dn.size(); ++i) {
    Hit& h = by_row[dn[i].row];
    h.dense_rank = static_cast<int64_t>(i) + 1;
    h.dense_score = dn[i].score;
  }
  std::vector<std::pair<int64_t, Hit>> all(by_row.begin(), by_row.end());
  for (auto& [row, h] : all) {
    if (mode == Mode::kBm25) h.score = h.bm25_score;
    else if (mode == Mode::kDense) h.score = h.dense_score;
    else h.score = (h.bm25_rank ? 1.0 / (kRrfK + h.bm25_rank) : 0.0) + (h.dense_rank ? 1.0 / (kRrfK + h.dense_rank) : 0.0);
  }
  std::sort(all.begin(), all.end(), [&](const auto& a, const auto& b) {
    if (a.second.score != b.second.score) return a.second.score > b.second.score;
    return a.first < b.first;
  });
  if (static_cast<int64_t>(all.size()) > k) all.resize(static_cast<size_t>(k));
  std::vector<int64_t> rows;
  for (const auto& a : all) rows.push_back(a.first);
  const auto chunks = store_->chunks(rows);
  std::vector<Hit> out;
  for (size_t i = 0; i < all.size() && i < chunks.size(); ++i) {
    Hit h = all[i].second;
    h.chunk = chunks[i];
    out.push_back(std::move(h));
  }
  return out;
}

nlohmann::json Answer::to_json() const {
  nlohmann::json src = nlohmann::json::array();
  for (size_t i = 0; i < sources.size(); ++i) {
    auto j = sources[i].to_json();
    j["n"] = i + 1;
    src.push_back(j);
  }
  return {{"found", found}, {"answer", text}, {"cited", cited}, {"sources", src}};
}

Answer extractive_answer(Retriever& r, const std::string& query, int64_t k, Mode mode, const Filter& filter,
                         int64_t max_sentences) {
  return answer_from_hits(r.search(query, k, mode, filter), query, max_sentences);
}

namespace {

// A chunk's text with its soft line breaks turned into spaces, byte for byte: a '\n' inside a
// hard-wrapped paragraph, i.e. not next to another line break and not before a line that starts
// a Markdown block (heading, list item, quote, table row, fence). ICU's sentence rules end a
// sentence at every line break (UAX #29 rule SB4), which cut wrapped sentences in two.
std::string unwrap_soft_line_breaks(std::string t) {
  auto starts_block = [&](size_t i) {  // i: first byte of a line
    while (i < t.size() && (t[i] == ' ' || t[i] == '\t')) ++i;
    if (i >= t.size() || t[i] == '\n' || t[i] == '\r') return true;
    const char c = t[i];
    if (c == '#' || c == '>' || c == '|' || c == '`' || c == '~') return true;
    if ((c == '-' || c == '*' || c == '+') && (i + 1 >= t.size() || t[i + 1] == ' ')) return true;
    size_t j = i;
    while (j < t.size() && std::isdigit(static_cast<unsigned char>(t[j]))) ++j;
    return j > i && j < t.size() && (t[j] == '.' || t[j] == ')');
  };
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '\n') continue;
    const bool after_break = i > 0 && (t[i - 1] == '\n' || t[i - 1] == '\r');
    if (!after_break && !starts_block(i + 1)) t[i] = ' ';
  }
  return t;
}

}  // namespace

Answer answer_from_hits(std::vector<Hit> hits, const std::string& query, int64_t max_sentences) {
  Answer a;
  a.sources = std::move(hits);
  std::vector<std::string> qterms = search_terms(query);
  std::sort(qterms.begin(), qterms.end());
  qterms.erase(std::unique(qterms.begin(), qterms.end()), qterms.end());
  struct Sent {
    int64_t source;  // 1-based
    std::string text;
    std::set<std::string> terms;
    double score = 0;
  };
  std::vector<Sent> sents;
  for (size_t i = 0; i < a.sources.size(); ++i) {
    const std::string t = unwrap_soft_line_breaks(a.sources[i].chunk.text);
    for (const auto& [b, e] : sentence_spans(t)) {
      std::string s = t.substr(b, e - b);
      while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
      size_t lead = 0;
      while (lead < s.size() && std::isspace(static_cast<unsigned char>(s[lead]))) ++lead;
      s = s.substr(lead);
      if (s.empty()) continue;
      for (auto& c : s)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
      Sent st{static_cast<int64_t>(i) + 1, s, {}, 0};
      for (auto& term : search_terms(s)) st.terms.insert(term);
      sents.push_back(std::move(st));
    }
  }
  std::unordered_map<std::string, int64_t> df;
  for (const auto& s : sents)
    for (const auto& q : qterms)
      if (s.terms.count(q)) ++df[q];
  const double n = static_cast<double>(sents.size());
  for (auto& s : sents)
    for (const auto& q : qterms)
      if (s.terms.count(q)) s.score += std::log(1.0 + n / static_cast<double>(df[q]));
  std::stable_sort(sents.begin(), sents.end(), [](const Sent& x, const Sent& y) { return x.score > y.score; });
  if (sents.empty() || sents[0].score <= 0) {
    a.found = false;
    a.text = "No relevant passage was found in the index for this question.";
    return a;
  }
  a.found = true;
  a.best_sentence = sents[0].text;
  const double best = sents[0].score;
  for (size_t i = 0; i < sents.size() && static_cast<int64_t>(i) < max_sentences; ++i) {
    if (sents[i].score < 0.5 * best) break;
    a.text += (a.text.empty() ? "" : " ") + sents[i].text + fmt::format(" [{}]", sents[i].source);
    if (std::find(a.cited.begin(), a.cited.end(), sents[i].source) == a.cited.end()) a.cited.push_back(sents[i].source);
  }
  return a;
}

void add_single_chunk_documents(Store& store, const std::string& file, const std::vector<DocRecord>& docs,
                                const std::vector<std::string>& texts, const text::WordPieceTokenizer& tok,
                                const models::SentenceEmbedder* embedder) {
  std::vector<ChunkRecord> crecs;
  for (size_t i = 0; i < docs.size(); ++i) {
    ChunkRecord r;
    r.id = chunk_id(docs[i].source, 0);
    r.source = docs[i].source;
    r.title = docs[i].title;
    r.text = texts[i];
    r.end = static_cast<int64_t>(texts[i].size());
    r.n_tokens = tok.count_tokens(texts[i]);
    r.terms = join_terms(search_terms(docs[i].title + "\n" + texts[i]));
    crecs.push_back(std::move(r));
  }
  store.replace_file(file, "-", docs, crecs, embed_texts(embedder, texts, 32));
}

}  // namespace loom::rag
