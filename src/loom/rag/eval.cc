#include "loom/rag/eval.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <unistd.h>

#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/progress.h"
#include "loom/text/wordpiece.h"

namespace loom::rag {
namespace fs = std::filesystem;
namespace {

struct Question {
  std::string id;
  std::string text;
  std::vector<std::string> relevant;  // corpus ids
  std::vector<std::string> answers;   // SQuAD answer texts (empty for BEIR)
};

struct Corpus {
  std::vector<std::string> ids, titles, texts;
};

const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& file, int64_t rec) {
  if (!j.is_object() || !j.contains(key)) fail(Where{file, rec, key}, "missing field");
  return j[key];
}

void load_squad(const std::string& file, Corpus* corpus, std::vector<Question>* questions) {
  const nlohmann::json j = core::read_json(file);
  const auto& data = field(j, "data", file, 0);
  if (!data.is_array()) fail(Where{file, 0, "data"}, "expected an array");
  int64_t ai = 0;
  for (const auto& art : data) {
    ++ai;
    const std::string title = art.value("title", std::string());
    const auto& paras = field(art, "paragraphs", file, ai);
    if (!paras.is_array()) fail(Where{file, ai, "paragraphs"}, "expected an array");
    int64_t pi = 0;
    for (const auto& p : paras) {
      ++pi;
      const std::string pid = fmt::format("a{}p{}", ai, pi);
      const auto& ctx = field(p, "context", file, ai);
      if (!ctx.is_string()) fail(Where{file, ai, "context"}, "expected a string");
      if (corpus) {
        corpus->ids.push_back(pid);
        corpus->titles.push_back(title);
        corpus->texts.push_back(ctx.get<std::string>());
      }
      if (!questions) continue;
      if (!p.contains("qas")) continue;
      for (const auto& qa : p["qas"]) {
        Question q;
        const auto& qt = field(qa, "question", file, ai);
        if (!qt.is_string()) fail(Where{file, ai, "question"}, "expected a string");
        q.id = qa.value("id", pid + "q" + std::to_string(questions->size()));
        q.text = qt.get<std::string>();
        q.relevant = {pid};
        if (qa.contains("answers") && qa["answers"].is_array())
          for (const auto& a : qa["answers"])
            if (a.is_object() && a.contains("text") && a["text"].is_string()) q.answers.push_back(a["text"].get<std::string>());
        questions->push_back(std::move(q));
      }
    }
  }
}

std::vector<nlohmann::json> read_jsonl(const std::string& file) {
  std::vector<nlohmann::json> out;
  std::istringstream in(core::read_file(file));
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) fail(Where{file, n}, "not a JSON object");
    out.push_back(std::move(j));
  }
  return out;
}

void load_beir(const std::string& dir, Corpus* corpus, std::vector<Question>* questions) {
  const std::string cf = dir + "/corpus.jsonl", qf = dir + "/queries.jsonl", rf = dir + "/qrels/test.tsv";
  int64_t n = 0;
  for (const auto& d : read_jsonl(cf)) {
    ++n;
    const auto& id = field(d, "_id", cf, n);
    corpus->ids.push_back(id.is_string() ? id.get<std::string>() : id.dump());
    corpus->titles.push_back(d.value("title", std::string()));
    const auto& t = field(d, "text", cf, n);
    if (!t.is_string()) fail(Where{cf, n, "text"}, "expected a string");
    corpus->texts.push_back(t.get<std::string>());
  }
  std::map<std::string, std::vector<std::string>> qrels;
  std::istringstream in(core::read_file(rf));
  std::string line;
  n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream ls(line);
    std::string q, c, s;
    if (!(ls >> q >> c >> s)) continue;
    if (n == 1 && q == "query-id") continue;
    double score = 0;
    try {
      score = std::stod(s);
    } catch (const std::exception&) {
      fail(Where{rf, n, "score"}, "not a number: {}", s);
    }
    if (score > 0) qrels[q].push_back(c);
  }
  n = 0;
  for (const auto& qj : read_jsonl(qf)) {
    ++n;
    const auto& idj = field(qj, "_id", qf, n);
    const std::string id = idj.is_string() ? idj.get<std::string>() : idj.dump();
    auto it = qrels.find(id);
    if (it == qrels.end()) continue;
    const auto& t = field(qj, "text", qf, n);
    if (!t.is_string()) fail(Where{qf, n, "text"}, "expected a string");
    questions->push_back(Question{id, t.get<std::string>(), it->second, {}});
  }
}

bool is_punct_or_space(UChar32 c) {
  if (u_isspace(c)) return true;
  const int8_t t = u_charType(c);
  return t == U_DASH_PUNCTUATION || t == U_START_PUNCTUATION || t == U_END_PUNCTUATION ||
         t == U_CONNECTOR_PUNCTUATION || t == U_OTHER_PUNCTUATION || t == U_INITIAL_PUNCTUATION ||
         t == U_FINAL_PUNCTUATION || (c < 128 && std::ispunct(static_cast<int>(c)));
}

}  // namespace

std::vector<std::string> squad_tokens(const std::string& s) {
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
  u.toLower();
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty() && cur != "a" && cur != "an" && cur != "the") out.push_back(cur);
    cur.clear();
  };
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    i += U16_LENGTH(c);
    if (is_punct_or_space(c)) {
      flush();
    } else if (text::is_cjk_ideograph(static_cast<uint32_t>(c))) {
      flush();
      std::string one;
      icu::UnicodeString(c).toUTF8String(one);
      out.push_back(one);
    } else {
      icu::UnicodeString(c).toUTF8String(cur);
    }
  }
  flush();
  return out;
}

std::pair<double, double> squad_em_f1(const std::string& prediction, const std::vector<std::string>& golds) {
  double em = 0, f1 = 0;
  const auto p = squad_tokens(prediction);
  for (const auto& g : golds) {
    const auto t = squad_tokens(g);
    if (p == t) em = 1;
    std::map<std::string, int64_t> cp, cg;
    for (const auto& x : p) ++cp[x];
    for (const auto& x : t) ++cg[x];
    int64_t common = 0;
    for (const auto& [w, c] : cp)
      if (cg.count(w)) common += std::min(c, cg[w]);
    if (common == 0 || p.empty() || t.empty()) continue;
    const double prec = static_cast<double>(common) / static_cast<double>(p.size());
    const double rec = static_cast<double>(common) / static_cast<double>(t.size());
    f1 = std::max(f1, 2 * prec * rec / (prec + rec));
  }
  return {em, f1};
}

QueryMetrics rank_metrics(const std::vector<std::string>& ranked, const std::vector<std::string>& relevant) {
  QueryMetrics m;
  if (relevant.empty()) return m;
  const std::set<std::string> rel(relevant.begin(), relevant.end());
  auto recall_at = [&](size_t k) {
    int64_t hit = 0;
    for (size_t i = 0; i < ranked.size() && i < k; ++i) hit += rel.count(ranked[i]) ? 1 : 0;
    return static_cast<double>(hit) / static_cast<double>(rel.size());
  };
  m.recall1 = recall_at(1);
  m.recall5 = recall_at(5);
  m.recall10 = recall_at(10);
  m.recall20 = recall_at(20);
  double dcg = 0, idcg = 0;
  for (size_t i = 0; i < ranked.size() && i < 10; ++i) {
    if (rel.count(ranked[i])) {
      if (m.mrr10 == 0) m.mrr10 = 1.0 / static_cast<double>(i + 1);
      dcg += 1.0 / std::log2(static_cast<double>(i) + 2.0);
    }
  }
  for (size_t i = 0; i < rel.size() && i < 10; ++i) idcg += 1.0 / std::log2(static_cast<double>(i) + 2.0);
  m.ndcg10 = idcg > 0 ? dcg / idcg : 0;
  return m;
}

nlohmann::json evaluate(const EvalOptions& o, std::FILE* log) {
  Corpus corpus;
  std::vector<Question> questions;
  const bool beir = core::dir_exists(o.qa);
  if (beir) {
    load_beir(o.qa, &corpus, &questions);
  } else {
    load_squad(o.qa, o.docs_qa.empty() ? &corpus : nullptr, &questions);
    if (!o.docs_qa.empty()) {
      load_squad(o.docs_qa, &corpus, nullptr);
      Corpus own;
      load_squad(o.qa, &own, nullptr);
      if (own.ids != corpus.ids)
        fail(Where{o.docs_qa}, "paragraphs are not parallel to {} ({} vs {} paragraphs)", o.qa, corpus.ids.size(), own.ids.size());
    }
  }
  if (o.limit > 0 && static_cast<int64_t>(questions.size()) > o.limit) questions.resize(static_cast<size_t>(o.limit));

  // The index: given, or a fresh temporary one with one chunk per paragraph / document.
  std::string dir = o.index_dir;
  bool temporary = false;
  if (dir.empty()) {
    static std::atomic<int> counter{0};
    dir = (fs::temp_directory_path() / fmt::format("loom-rag-eval-{}-{}", ::getpid(), counter++)).string();
    fs::remove_all(dir);
    temporary = true;
    auto store = open_sqlite_store(dir, true);
    std::shared_ptr<models::SentenceEmbedder> emb;
    if (!o.embed_dir.empty()) emb = models::SentenceEmbedder::load(o.embed_dir);
    const std::string tok_dir = o.embed_dir.empty() ? default_tokenizer_dir() : o.embed_dir;
    const auto tok = text::WordPieceTokenizer::load(tok_dir);
    store->set_setting("embed_model", emb ? emb->fingerprint() : "none (BM25 only)");
    store->set_setting("embed_dir", emb ? fs::absolute(o.embed_dir).string() : "");
    std::vector<DocRecord> docs;
    std::vector<std::string> texts;
    for (size_t i = 0; i < corpus.ids.size(); ++i) {
      DocRecord d;
      d.source = corpus.ids[i];
      d.file = "eval";
      d.title = corpus.titles[i];
      docs.push_back(d);
      texts.push_back(corpus.texts[i]);
    }
    add_single_chunk_documents(*store, "eval", docs, texts, tok, emb.get());
  }
  struct Cleanup {
    std::string dir;
    bool on;
    ~Cleanup() {
      std::error_code ec;
      if (on) fs::remove_all(dir, ec);
    }
  } cleanup{dir, temporary};

  Retriever r(dir, o.embed_dir);
  nlohmann::json out;
  out["dataset"] = o.qa;
  if (!o.docs_qa.empty()) out["corpus_from"] = o.docs_qa;
  out["format"] = beir ? "beir" : "squad";
  out["questions"] = questions.size();
  out["corpus"] = corpus.ids.size();
  out["index"] = temporary ? "temporary (one chunk per paragraph/document)" : o.index_dir;
  for (Mode mode : o.modes) {
    QueryMetrics sum;
    double em = 0, f1 = 0;
    int64_t answered = 0;
    core::Progress progress(log, core::Progress::Options{core::is_terminal(log), 0.25, static_cast<int64_t>(questions.size()), 0});
    int64_t done = 0;
    for (const auto& q : questions) {
      std::vector<Hit> hits;
      try {
        hits = r.search(q.text, 20, mode);
      } catch (const loom::Error&) {
        hits.clear();  // a question without searchable words retrieves nothing (counts as a miss)
      }
      std::vector<std::string> ranked;
      for (const auto& h : hits) {
        if (temporary) ranked.push_back(h.chunk.source);
        else ranked.push_back(h.chunk.id);
      }
      std::vector<std::string> relevant = q.relevant;
      if (!temporary) {
        // A given index: a chunk is relevant when it contains one of the answers.
        relevant.clear();
        for (const auto& h : hits)
          for (const auto& a : q.answers)
            if (!a.empty() && h.chunk.text.find(a) != std::string::npos) relevant.push_back(h.chunk.id);
        if (relevant.empty()) relevant.push_back("<none retrieved>");
      }
      const QueryMetrics m = rank_metrics(ranked, relevant);
      sum.recall1 += m.recall1;
      sum.recall5 += m.recall5;
      sum.recall10 += m.recall10;
      sum.recall20 += m.recall20;
      sum.mrr10 += m.mrr10;
      sum.ndcg10 += m.ndcg10;
      if (!q.answers.empty()) {
        std::vector<Hit> top(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(hits.size(), static_cast<size_t>(o.answer_k))));
        const Answer a = answer_from_hits(std::move(top), q.text, 1);
        const auto [e, f] = squad_em_f1(a.best_sentence, q.answers);
        em += e;
        f1 += f;
        ++answered;
      }
      progress.update(++done, fmt::format("eval {}: {}/{} questions", mode_name(mode), done, questions.size()));
    }
    const double n = questions.empty() ? 1.0 : static_cast<double>(questions.size());
    nlohmann::json mj{{"recall@1", sum.recall1 / n}, {"recall@5", sum.recall5 / n}, {"recall@10", sum.recall10 / n},
                      {"recall@20", sum.recall20 / n}, {"mrr@10", sum.mrr10 / n}, {"ndcg@10", sum.ndcg10 / n}};
    if (answered > 0) {
      mj["extractive_em"] = em / static_cast<double>(answered);
      mj["extractive_f1"] = f1 / static_cast<double>(answered);
    }
    out["modes"][mode_name(mode)] = mj;
    progress.finish(fmt::format("eval {}: {} questions, recall@5 {:.4f}, MRR@10 {:.4f}", mode_name(mode), questions.size(),
                                sum.recall5 / n, sum.mrr10 / n));
  }
  return out;
}

}  // namespace loom::rag
