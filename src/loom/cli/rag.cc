// `loom rag ingest|search|ask|eval`: wiring of loom::rag (src/loom/rag/) to the command line.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/rag/engine.h"
#include "loom/rag/eval.h"

namespace loom::cli {
namespace {

struct QueryOpts {
  std::string index, question, mode, where, embed;
  int64_t k = 5;
  bool json = false;
};

void add_query_options(CLI::App* c, QueryOpts& o) {
  c->add_option("--index", o.index, "index directory")->required();
  c->add_option("question", o.question, "the question")->required();
  c->add_option("-k", o.k, "chunks to retrieve")->check(CLI::Range(1, 1000));
  c->add_option("--mode", o.mode, "bm25 | dense | hybrid (default: hybrid when the index has vectors, else bm25)");
  c->add_option("--where", o.where, "metadata filter, e.g. 'meta.lang = \"en\" AND meta.year >= 2020'");
  c->add_option("--embed", o.embed, "embedding model directory (default: the one the index was built with)");
  c->add_flag("--json", o.json, "print JSON");
}

void print_sources(const std::vector<rag::Hit>& hits) {
  for (size_t i = 0; i < hits.size(); ++i) {
    const auto& c = hits[i].chunk;
    std::printf("[%zu] %s%s%s, bytes %lld-%lld\n", i + 1, c.source.c_str(), c.heading_path.empty() ? "" : " > ",
                c.heading_path.c_str(), static_cast<long long>(c.begin), static_cast<long long>(c.end));
  }
}

}  // namespace

void add_rag(CLI::App& app) {
  auto* rag = app.add_subcommand("rag", "retrieval-augmented QA over a document collection: ingest, search, ask, eval");
  rag->require_subcommand(1);

  // ---- ingest ----
  static rag::IngestOptions io;
  static std::string ingest_index;
  static std::vector<std::string> inputs;
  static bool ingest_json = false;
  auto* ing = rag->add_subcommand("ingest", "add / update files (.txt .md .html .jsonl .pdf) in an index");
  ing->add_option("--index", ingest_index, "index directory (created if missing)")->required();
  ing->add_option("inputs", inputs, "files and directories")->required();
  ing->add_option("--embed", io.embed_dir, "sentence-transformers model directory for dense vectors (default: none, BM25 only)");
  ing->add_option("--max-tokens", io.chunk.max_tokens, "chunk budget in the embedding tokenizer's tokens")->capture_default_str();
  ing->add_option("--overlap", io.chunk.overlap_tokens, "overlap between consecutive chunks, tokens")->capture_default_str();
  ing->add_option("--text-field", io.extract.text_field, "JSONL field with the text")->capture_default_str();
  ing->add_flag("--prune", io.prune, "remove indexed files that are no longer among the inputs");
  ing->add_flag("--json", ingest_json, "print the summary as JSON");
  ing->callback([] {
    const auto s = rag::ingest(ingest_index, inputs, io, stderr);
    for (const auto& k : s.skipped) std::fprintf(stderr, "skipped: %s (%s)\n", k.path.c_str(), k.reason.c_str());
    if (ingest_json) std::printf("%s\n", s.to_json().dump(1).c_str());
  });

  // ---- search ----
  static QueryOpts so;
  auto* se = rag->add_subcommand("search", "retrieve chunks with a score breakdown");
  add_query_options(se, so);
  se->callback([] {
    rag::Retriever r(so.index, so.embed);
    const rag::Mode mode = so.mode.empty() ? r.default_mode() : rag::parse_mode(so.mode);
    const auto hits = r.search(so.question, so.k, mode, so.where.empty() ? rag::Filter{} : rag::Filter::parse(so.where));
    if (so.json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& h : hits) j.push_back(h.to_json());
      std::printf("%s\n", nlohmann::json{{"mode", rag::mode_name(mode)}, {"hits", j}}.dump(1).c_str());
      return;
    }
    for (size_t i = 0; i < hits.size(); ++i) {
      const auto& h = hits[i];
      std::printf("%zu. %.4f  %s  (bm25 #%lld %.3f, dense #%lld %.3f)  %s\n", i + 1, h.score, h.chunk.id.c_str(),
                  static_cast<long long>(h.bm25_rank), h.bm25_score, static_cast<long long>(h.dense_rank), h.dense_score,
                  h.chunk.source.c_str());
      std::string t = h.chunk.text.substr(0, 300);
      for (auto& ch : t)
        if (ch == '\n') ch = ' ';
      std::printf("   %s%s\n", t.c_str(), h.chunk.text.size() > 300 ? "..." : "");
    }
    if (hits.empty()) std::printf("no results\n");
  });

  // ---- ask ----
  static QueryOpts ao;
  auto* ask = rag->add_subcommand("ask", "extractive answer with [n] citations and numbered sources (no LLM needed)");
  add_query_options(ask, ao);
  ask->callback([] {
    rag::Retriever r(ao.index, ao.embed);
    const rag::Mode mode = ao.mode.empty() ? r.default_mode() : rag::parse_mode(ao.mode);
    const auto a = rag::extractive_answer(r, ao.question, ao.k, mode, ao.where.empty() ? rag::Filter{} : rag::Filter::parse(ao.where));
    if (ao.json) {
      std::printf("%s\n", a.to_json().dump(1).c_str());
      return;
    }
    std::printf("%s\n", a.text.c_str());
    if (!a.sources.empty()) {
      std::printf("\nSources:\n");
      print_sources(a.sources);
    }
  });

  // ---- eval ----
  static rag::EvalOptions eo;
  static std::string modes = "bm25";
  static bool eval_json = false;
  auto* ev = rag->add_subcommand("eval", "retrieval recall@k / MRR@10 / nDCG@10 and extractive EM/F1 on SQuAD or BEIR data");
  ev->add_option("--qa", eo.qa, "SQuAD-format JSON file or BEIR directory")->required();
  ev->add_option("--docs", eo.docs_qa, "SQuAD file whose (parallel) paragraphs are the corpus, for cross-lingual runs");
  ev->add_option("--index", eo.index_dir, "evaluate on this index (default: a temporary one, one chunk per paragraph)");
  ev->add_option("--embed", eo.embed_dir, "embedding model for dense / hybrid");
  ev->add_option("--mode", modes, "comma-separated modes: bm25,dense,hybrid")->capture_default_str();
  ev->add_option("--limit", eo.limit, "only the first N questions");
  ev->add_flag("--json", eval_json, "print JSON");
  ev->callback([] {
    eo.modes.clear();
    std::stringstream ss(modes);
    std::string m;
    while (std::getline(ss, m, ',')) eo.modes.push_back(rag::parse_mode(m));
    const auto j = rag::evaluate(eo, stderr);
    if (eval_json) {
      std::printf("%s\n", j.dump(1).c_str());
      return;
    }
    std::printf("%s: %lld questions, %lld passages\n", eo.qa.c_str(), static_cast<long long>(j["questions"].get<int64_t>()),
                static_cast<long long>(j["corpus"].get<int64_t>()));
    std::printf("%-8s %9s %9s %9s %9s %8s %8s %6s %6s\n", "mode", "recall@1", "recall@5", "recall@10", "recall@20", "MRR@10",
                "nDCG@10", "EM", "F1");
    for (const auto& [name, v] : j["modes"].items())
      std::printf("%-8s %9.4f %9.4f %9.4f %9.4f %8.4f %8.4f %6.4f %6.4f\n", name.c_str(), v["recall@1"].get<double>(),
                  v["recall@5"].get<double>(), v["recall@10"].get<double>(), v["recall@20"].get<double>(),
                  v["mrr@10"].get<double>(), v["ndcg@10"].get<double>(), v.value("extractive_em", 0.0),
                  v.value("extractive_f1", 0.0));
  });
}

}  // namespace loom::cli
