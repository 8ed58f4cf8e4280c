// Sub-commands of the `loom` executable. Each add_* registers one sub-command (its options and
// its callback) on the top-level CLI11 app; the callback throws loom::Error on bad input, which
// main() turns into one message on stderr and exit code 1. Wiring only: the work lives in the
// library layers below.
#pragma once

namespace CLI {
class App;
}

namespace loom::cli {

/// `loom version`: prints the loom and libtorch versions.
void add_version(CLI::App& app);

/// `loom tokenize --model DIR [FILE] [--target] [--src L --tgt L] [--pieces] [--decode]`: reads
/// lines from FILE (or stdin) and prints, per line, the space-separated token ids of the model's
/// translation tokenizer (source side; --target: labels; --pieces: token strings; --decode:
/// input lines are ids, printed as decoded target text). Languages are validated as in
/// loom::text::Seq2SeqTokenizer::set_languages; without --src/--tgt the tokenizer's defaults
/// (tokenizer_config.json) apply. Errors name the input line.
void add_tokenize(CLI::App& app);

/// `loom download ID [--revision main] [--endpoint URL] [--cache-dir DIR]`: fetches a model's
/// config, weights and tokenizer files from the Hugging Face Hub into the hub cache
/// (loom::io::download_model; token from $HF_TOKEN) and prints the snapshot directory, which
/// loom::io::resolve_model then finds by id.
void add_download(CLI::App& app);

/// `loom translate [--model DIR|ID] [--src L --tgt L] [--fields a,b] [--beam N] ... INPUT OUTPUT`:
/// translates a TXT (line-aligned) or JSONL dataset with an HF Marian / NLLB checkpoint
/// (default: models/en-zh), resumable (--resume), shardable (--shard I/N or $RANK/$WORLD_SIZE),
/// bad rows abort or go to a rejects file (--on-error skip). See pipeline::run_translate_job.
void add_translate(CLI::App& app);

/// `loom init-model --like opus-mt-en-zh|nllb-200-distilled-600M OUT`: writes a random-weight HF
/// checkpoint with the real architecture and a tokenizer (models::random_seq2seq_weights).
void add_init_model(CLI::App& app);

/// `loom model-info DIR|CONFIG.json`: prints a loom model's architecture — per encoder/decoder
/// block the DeLighT depth N^b, width multiplier w_m^b, GLT input/output widths and groups —
/// and its parameter counts (total, embeddings, per block), computed from the config alone
/// (models::native_model_info). Errors name the config file and field.
void add_model_info(CLI::App& app);

/// `loom eval <what> ...`: the evaluation command group. Its sub-commands are registered by the
/// add_eval_* functions below, listed in add_eval() (src/loom/cli/eval.cc); a new evaluation
/// (`eval lm`, `eval passkey`) adds one add_eval_<name>(CLI::App& eval) declaration here, its
/// implementation in src/loom/cli/eval_<name>.cc (or eval.cc), and one line in add_eval().
void add_eval(CLI::App& app);

/// `loom eval mt --ref R [--ref R2 ...] --hyp H [--tokenize 13a|zh|intl|none] [--lang zh]
/// [--metrics bleu,chrf] [--chrf-word-order 2] [--width 2] [--json] [--sentence-level]`: corpus
/// BLEU and chrF of a line-aligned hypothesis file against one or more reference files, with
/// sacreBLEU 2.x's definitions, printed as sacreBLEU's text lines ("BLEU|nrefs:1|case:mixed|
/// eff:no|tok:13a|smooth:exp|version:loom-0.1.0 = 12.34 ...", "chrF2|... = 45.67") or as JSON
/// (loom::eval::mt_eval_json). --lang zh selects the zh tokenizer unless --tokenize is given.
/// Mismatched line counts and invalid UTF-8 are errors naming the file (and line).
void add_eval_mt(CLI::App& eval);

/// `loom train <what> ...`: the training command group (src/loom/cli/train.cc). Each kind of
/// model adds one add_train_<name>(CLI::App& train) declaration here, its implementation, and
/// one line in add_train().
void add_train(CLI::App& app);

/// `loom train mt --config C.json (--data D.tsv | --src-file S --tgt-file T) --out RUN [--steps N]
/// [--resume] [--nproc N] [--export auto|last|best|average] [--average-last N] ...`: cleans and
/// splits the parallel data (RUN/data), trains SentencePiece (RUN/spm), trains a NativeSeq2Seq
/// (transformer/DeLighT) with train::Trainer + train::MtTask (checkpoints, metrics.jsonl,
/// plots), and exports RUN/model, a loom model directory `loom translate --model` runs, plus
/// RUN/test_scores.json. Config errors name the file and field ("train.lr"). docs/training.md.
void add_train_mt(CLI::App& train);

/// `loom train lm --config C [--data FILES...] [--valid FILES...] --out RUN [--steps N] [--resume]
/// [--nproc N] [--task lm|passkey]`: trains a models::DecoderLM (standard / Infini / kNN
/// attention, OpenELM scaling) on the shared train::Trainer with train::LmTask (windows of W
/// segments of one document, memories reset per window) or train::PasskeyTask (generated
/// passkey prompts, loss on the answer). Writes RUN/checkpoints, metrics.jsonl, plots/ and the
/// exported model directory RUN/model (config.json, model.safetensors, tokenizer.json). See
/// docs/long_context.md.
void add_train_lm(CLI::App& train);

/// `loom eval lm --model DIR FILES... [--chunk N] [--max-tokens N] [--knn-memory-size N]
/// [--doc-split file|blank_lines|marker:X] [--json]`: streaming perplexity (nats/token, ppl) of
/// each document with the recurrent state carried (memory reset only at a document's start),
/// and tokens/s (loom::eval::document_perplexity).
void add_eval_lm(CLI::App& eval);

/// `loom eval passkey --model DIR --lengths 1K,2K,... --depths 0,25,50,75,100 --trials N [--seed]
/// [--chunk N] [--json OUT.json] [--svg OUT.svg]`: the passkey-retrieval accuracy grid (exact
/// 5-digit match and per-digit) printed as a table, written as JSON and as a heat map
/// (loom::eval::passkey_grid, core::heat_map_svg).
void add_eval_passkey(CLI::App& eval);

/// `loom generate --model DIR [--prompt TEXT | stdin] --max-new-tokens N [--temperature T]
/// [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S] [--chunk N]`: samples a
/// continuation with a loom DecoderLM model directory, printing each token's text to stdout as
/// soon as it is produced (loom::generate::generate_lm); a long prompt is fed in chunks with the
/// memory state carried.
void add_generate(CLI::App& app);
void add_chat(CLI::App& app);

/// `loom rag ingest|search|ask|eval` (src/loom/cli/rag.cc): `ingest --index DIR FILES|DIRS
/// [--embed DIR] [--max-tokens N] [--overlap N] [--text-field F] [--prune]` (rag::ingest);
/// `search --index DIR QUESTION [-k N] [--mode bm25|dense|hybrid] [--where FILTER] [--json]`;
/// `ask` (same options): extractive answer with [n] citations and the numbered sources;
/// `eval --qa FILE|BEIR_DIR [--docs FILE] [--index DIR] [--mode bm25,dense,hybrid] [--embed DIR]
/// [--json]`: recall@k, MRR@10, nDCG@10, extractive EM/F1 (rag::evaluate).
void add_rag(CLI::App& app);
/// `loom serve --model NAME=DIR|ID ... [--host 127.0.0.1] [--port 8080] [--api-key KEY]
/// [--max-body-bytes N] [--max-input-tokens N] [--max-queued N] [--timeout S]`: the
/// OpenAI-compatible HTTP server (loom::serve::Server): /v1/translations, /v1/models, /health,
/// /metrics and the web page at /. Prints "loom serve: listening on http://HOST:PORT" to stderr
/// once bound; SIGINT/SIGTERM stop it cleanly.
void add_serve(CLI::App& app);

}  // namespace loom::cli
