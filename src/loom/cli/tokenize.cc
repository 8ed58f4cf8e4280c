// `loom tokenize`: prints the token ids (or pieces) a translation model's tokenizer produces for
// each input line — the debugging tool for comparing with Hugging Face tokenizer(text).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/text/seq2seq_tokenizer.h"

namespace loom::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string file = "-";
  std::string src, tgt;
  bool target = false;
  bool pieces = false;
  bool decode = false;
};

// Parses one line of space-separated token ids (for --decode).
std::vector<int64_t> parse_ids(const std::string& line, const Where& where) {
  std::vector<int64_t> ids;
  size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
    if (pos >= line.size()) break;
    size_t end = pos;
    while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
    const std::string tok = line.substr(pos, end - pos);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != tok.size()) fail(where, "'{}' is not a token id", tok);
    ids.push_back(v);
    pos = end;
  }
  return ids;
}

void run(const TokenizeOptions& o) {
  auto tok = text::load_seq2seq_tokenizer(o.model);
  if (!o.src.empty() || !o.tgt.empty()) tok->set_languages(o.src, o.tgt);

  std::ifstream file_in;
  std::istream* in = &std::cin;
  const std::string name = o.file == "-" ? "<stdin>" : o.file;
  if (o.file != "-") {
    file_in.open(o.file, std::ios::binary);
    if (!file_in) fail(Where{o.file}, "cannot open input file");
    in = &file_in;
  }
  std::string line, out;
  int64_t line_no = 0;
  while (std::getline(*in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const Where where{name, line_no};
    out.clear();
    try {
      if (o.decode) {
        out = tok->decode_target(parse_ids(line, where));
      } else {
        std::vector<int64_t> ids = o.target ? tok->encode_target(line) : tok->encode_source(line);
        for (size_t i = 0; i < ids.size(); ++i) {
          if (i) out.push_back(' ');
          out += o.pieces ? tok->id_to_token(ids[i], o.target) : std::to_string(ids[i]);
        }
      }
    } catch (const Error& e) {
      if (!e.where().file.empty() && e.where().line) throw;
      fail(where, "{}", e.message());
    }
    out.push_back('\n');
    if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size()) fail(Where{"<stdout>"}, "write failed");
  }
  if (in->bad()) fail(Where{name, line_no}, "read error");
  if (std::fflush(stdout) != 0) fail(Where{"<stdout>"}, "write failed");
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto opts = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand(
      "tokenize", "Print the token ids of each input line (one line of space-separated ids per line)");
  cmd->add_option("--model", opts->model, "Model directory with the tokenizer files")->required();
  cmd->add_option("file", opts->file, "Input text file, one sentence per line ('-' or none: stdin)");
  cmd->add_option("--src", opts->src, "Source language code (NLLB: e.g. eng_Latn)");
  cmd->add_option("--tgt", opts->tgt, "Target language code (NLLB: e.g. zho_Hans; Marian: a >>xx<< code)");
  cmd->add_flag("--target", opts->target, "Tokenize as target text (labels) instead of source text");
  cmd->add_flag("--pieces", opts->pieces, "Print token strings instead of ids");
  cmd->add_flag("--decode", opts->decode, "Input lines are target token ids: print their decoded text");
  cmd->callback([opts] { run(*opts); });
}

}  // namespace loom::cli
