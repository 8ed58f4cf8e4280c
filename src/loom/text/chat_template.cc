#include "loom/text/chat_template.h"

#include <unicode/unistr.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/utf8.h"

namespace loom::text {

namespace {

using json = nlohmann::json;

constexpr size_t kMaxOutput = 64u << 20;     // bytes of rendered text
constexpr int64_t kMaxSteps = 1'000'000;      // evaluated nodes: a runaway loop fails instead of hanging
constexpr int kMaxDepth = 200;                // nesting of macro calls / expressions
constexpr int64_t kMaxRange = 10'000'000;     // range() length

// ---------------------------------------------------------------------------------------------
// Values: JSON data, undefined, or a callable (macro, global function, bound method).

struct Value;
using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Fn = std::function<Value(const Args&, const Kwargs&)>;

struct Value {
  json j;
  bool undefined = false;
  std::shared_ptr<Fn> fn;
  std::string undefined_name;  // what was undefined, for error messages

  Value() = default;
  Value(json v) : j(std::move(v)) {}  // NOLINT: implicit on purpose
  static Value undef(std::string name) {
    Value v;
    v.undefined = true;
    v.undefined_name = std::move(name);
    return v;
  }
  static Value function(Fn f) {
    Value v;
    v.fn = std::make_shared<Fn>(std::move(f));
    return v;
  }
  bool callable() const { return fn != nullptr; }
};

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers (strings are indexed by code point, as Python's str).

std::vector<std::string> code_points(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    n = std::min(n, s.size() - i);
    out.emplace_back(s.substr(i, n));
    i += n;
  }
  return out;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

std::string icu_case(const std::string& s, int mode) {  // 0 lower, 1 upper, 2 title
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
  if (mode == 0) u.toLower();
  else if (mode == 1) u.toUpper();
  else u.toTitle(nullptr);
  std::string out;
  u.toUTF8String(out);
  return out;
}

bool is_lower_str(const std::string& s) { return icu_case(s, 0) == s && icu_case(s, 1) != s; }
bool is_upper_str(const std::string& s) { return icu_case(s, 1) == s && icu_case(s, 0) != s; }

// Python str.strip/lstrip/rstrip with an optional set of characters.
std::string py_strip(const std::string& s, const std::optional<std::string>& chars, bool left, bool right) {
  if (!chars) {
    std::string_view v = s;
    if (left) v = core::lstrip_unicode_space(v);
    if (right) v = core::rstrip_unicode_space(v);
    return std::string(v);
  }
  std::vector<std::string> set = code_points(*chars);
  std::vector<std::string> cps = code_points(s);
  size_t b = 0, e = cps.size();
  auto in_set = [&](const std::string& c) { return std::find(set.begin(), set.end(), c) != set.end(); };
  if (left)
    while (b < e && in_set(cps[b])) ++b;
  if (right)
    while (e > b && in_set(cps[e - 1])) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) out += cps[i];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Python str() / repr() and json.dumps of JSON values.

std::string py_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string py_repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  const char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + q;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", c);
    else out.push_back(static_cast<char>(c));
  }
  return out + q;
}

std::string py_str(const json& v, bool repr = false);

std::string py_str(const json& v, bool repr) {
  switch (v.type()) {
    case json::value_t::null: return "None";
    case json::value_t::boolean: return v.get<bool>() ? "True" : "False";
    case json::value_t::number_integer: return std::to_string(v.get<int64_t>());
    case json::value_t::number_unsigned: return std::to_string(v.get<uint64_t>());
    case json::value_t::number_float: return py_float(v.get<double>());
    case json::value_t::string: return repr ? py_repr_string(v.get<std::string>()) : v.get<std::string>();
    case json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + py_str(v[i], true);
      return out + "]";
    }
    case json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        out += (first ? "" : ", ") + py_repr_string(it.key()) + ": " + py_str(it.value(), true);
        first = false;
      }
      return out + "}";
    }
    default: return "";
  }
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

// Python json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=...): separators ", " ": "
// without indent, "," ": " with it.
void json_dumps(const json& v, std::optional<int> indent, int level, std::string& out) {
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(*indent) * lvl, ' ');
  };
  switch (v.type()) {
    case json::value_t::null: out += "null"; return;
    case json::value_t::boolean: out += v.get<bool>() ? "true" : "false"; return;
    case json::value_t::number_float: {
      double d = v.get<double>();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : py_float(d);
      return;
    }
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: out += v.dump(); return;
    case json::value_t::string: out += json_string(v.get<std::string>()); return;
    case json::value_t::array: {
      if (v.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += indent ? "," : ", ";
        if (indent) newline(level + 1);
        json_dumps(v[i], indent, level + 1, out);
      }
      if (indent) newline(level);
      out += ']';
      return;
    }
    case json::value_t::object: {
      if (v.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += indent ? "," : ", ";
        first = false;
        if (indent) newline(level + 1);
        out += json_string(it.key()) + ": ";
        json_dumps(it.value(), indent, level + 1, out);
      }
      if (indent) newline(level);
      out += '}';
      return;
    }
    default: out += "null";
  }
}

bool truthy(const Value& v) {
  if (v.undefined) return false;
  if (v.fn) return true;
  const json& j = v.j;
  switch (j.type()) {
    case json::value_t::null: return false;
    case json::value_t::boolean: return j.get<bool>();
    case json::value_t::number_integer: return j.get<int64_t>() != 0;
    case json::value_t::number_unsigned: return j.get<uint64_t>() != 0;
    case json::value_t::number_float: return j.get<double>() != 0.0;
    case json::value_t::string: return !j.get_ref<const std::string&>().empty();
    case json::value_t::array:
    case json::value_t::object: return !j.empty();
    default: return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Lexer: the template becomes a list of pieces (text, {{ }}, {% %}), whitespace control applied.

enum class Tok { Name, String, Int, Float, Op, End };

struct Token {
  Tok type;
  std::string text;  // name, string value, operator, number text
  int line;
};

struct Piece {
  enum Kind { Text, Var, Block } kind;
  std::string text;           // Text
  std::vector<Token> tokens;  // Var / Block
  int line;
};

struct Source {
  std::string name;
  [[noreturn]] void error(int line, const std::string& msg) const {
    fail(Where{name, line, "chat_template"}, "{}", msg);
  }
};

class Lexer {
 public:
  Lexer(std::string src, const Source& s) : src_(std::move(src)), s_(s) {}

  std::vector<Piece> run() {
    struct Raw {
      Piece piece;
      bool is_comment = false;
      char open_mod = 0, close_mod = 0;  // '-', '+' or 0
    };
    std::vector<Raw> raws;
    size_t i = 0;
    int line = 1;
    std::string text;
    int text_line = 1;
    while (i < src_.size()) {
      if (src_[i] == '{' && i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        raws.push_back({Piece{Piece::Text, text, {}, text_line}});
        text.clear();
        const char kind = src_[i + 1];
        Raw r;
        r.piece.line = line;
        i += 2;
        if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) r.open_mod = src_[i++];
        if (kind == '#') {
          size_t end = src_.find("#}", i);
          if (end == std::string::npos) s_.error(line, "unterminated comment {#");
          r.is_comment = true;
          r.piece.kind = Piece::Block;
          if (end > i && src_[end - 1] == '-') r.close_mod = '-';
          else if (end > i && src_[end - 1] == '+') r.close_mod = '+';
          line += static_cast<int>(std::count(src_.begin() + i, src_.begin() + end, '\n'));
          i = end + 2;
        } else {
          r.piece.kind = kind == '{' ? Piece::Var : Piece::Block;
          const char close = kind == '{' ? '}' : '%';
          lex_tag(i, line, close, r.piece.tokens, r.close_mod);
        }
        raws.push_back(std::move(r));
        text_line = line;
      } else {
        if (src_[i] == '\n') ++line;
        text.push_back(src_[i++]);
      }
    }
    raws.push_back({Piece{Piece::Text, text, {}, text_line}});

    // Whitespace control between the pieces, as Jinja's lexer with trim_blocks and
    // lstrip_blocks: "-" strips all whitespace on that side; a block/comment tag without "+"
    // eats one newline after it, and the spaces/tabs before it when only they stand between
    // the start of its line and the tag.
    for (size_t k = 0; k < raws.size(); ++k) {
      if (raws[k].piece.kind != Piece::Text) continue;
      std::string& t = raws[k].piece.text;
      bool line_start = k == 0;
      if (k > 0) {  // the tag before
        const Raw& prev = raws[k - 1];
        if (prev.close_mod == '-') {
          size_t b = 0;
          while (b < t.size() && std::isspace(static_cast<unsigned char>(t[b]))) ++b;
          line_start = b > 0 && t[b - 1] == '\n';
          t.erase(0, b);
        } else if (prev.piece.kind == Piece::Block && prev.close_mod != '+' && !t.empty() && t[0] == '\n') {
          t.erase(0, 1);
          line_start = true;
        }
      }
      if (k + 1 < raws.size()) {  // the tag after
        const Raw& next = raws[k + 1];
        if (next.open_mod == '-') {
          size_t e = t.size();
          while (e > 0 && std::isspace(static_cast<unsigned char>(t[e - 1]))) --e;
          t.erase(e);
        } else if (next.piece.kind == Piece::Block && next.open_mod != '+') {
          const size_t nl = t.rfind('\n');
          const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
          if ((l_pos > 0 || line_start) && l_pos < t.size() &&
              std::all_of(t.begin() + l_pos, t.end(), [](char c) { return c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r'; }))
            t.erase(l_pos);
        }
      }
    }
    std::vector<Piece> out;
    for (auto& r : raws) {
      if (r.is_comment) continue;
      if (r.piece.kind == Piece::Text && r.piece.text.empty()) continue;
      out.push_back(std::move(r.piece));
    }
    return out;
  }

 private:
  void lex_tag(size_t& i, int& line, char close, std::vector<Token>& toks, char& close_mod) {
    const int start_line = line;
    int depth = 0;  // open ( [ {: "}}" inside a dict literal does not close the tag (as Jinja's lexer)
    while (true) {
      while (i < src_.size() && std::isspace(static_cast<unsigned char>(src_[i]))) {
        if (src_[i] == '\n') ++line;
        ++i;
      }
      if (i >= src_.size()) s_.error(start_line, "unterminated tag (no closing " + std::string(1, close) + "})");
      // Closing delimiter, with an optional - or + before it.
      for (char mod : {'-', '+', '\0'}) {
        if (depth > 0) break;
        size_t j = i;
        if (mod) {
          if (src_[j] != mod) continue;
          ++j;
        }
        if (j + 1 < src_.size() && src_[j] == close && src_[j + 1] == '}') {
          close_mod = mod;
          i = j + 2;
          return;
        }
      }
      const char c = src_[i];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = i;
        while (i < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) ++i;
        toks.push_back({Tok::Name, src_.substr(b, i - b), line});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t b = i;
        bool is_float = false;
        while (i < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) ++i;
        if (i + 1 < src_.size() && src_[i] == '.' && std::isdigit(static_cast<unsigned char>(src_[i + 1]))) {
          is_float = true;
          ++i;
          while (i < src_.size() && std::isdigit(static_cast<unsigned char>(src_[i]))) ++i;
        }
        if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {
          size_t j = i + 1;
          if (j < src_.size() && (src_[j] == '+' || src_[j] == '-')) ++j;
          if (j < src_.size() && std::isdigit(static_cast<unsigned char>(src_[j]))) {
            is_float = true;
            i = j;
            while (i < src_.size() && std::isdigit(static_cast<unsigned char>(src_[i]))) ++i;
          }
        }
        std::string num = src_.substr(b, i - b);
        num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
        toks.push_back({is_float ? Tok::Float : Tok::Int, num, line});
      } else if (c == '\'' || c == '"') {
        toks.push_back({Tok::String, lex_string(i, line), line});
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                     "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "=", "!"};
        bool matched = false;
        for (const char* op : kOps) {
          const size_t n = std::strlen(op);
          if (src_.compare(i, n, op) == 0) {
            toks.push_back({Tok::Op, op, line});
            if (n == 1 && (*op == '(' || *op == '[' || *op == '{')) ++depth;
            if (n == 1 && (*op == ')' || *op == ']' || *op == '}') && depth > 0) --depth;
            i += n;
            matched = true;
            break;
          }
        }
        if (!matched) s_.error(line, fmt::format("unexpected character '{}' in a tag", c));
      }
    }
  }

  std::string lex_string(size_t& i, int& line) {
    const char q = src_[i++];
    std::string out;
    while (true) {
      if (i >= src_.size()) s_.error(line, "unterminated string literal");
      char c = src_[i++];
      if (c == q) return out;
      if (c == '\n') ++line;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (i >= src_.size()) s_.error(line, "unterminated string literal");
      char e = src_[i++];
      switch (e) {
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case '0': out.push_back('\0'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'v': out.push_back('\v'); break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case '\n': ++line; break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + n > src_.size()) s_.error(line, "truncated \\" + std::string(1, e) + " escape");
          uint32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            const char h = src_[i + k];
            int d = std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                    : (h >= 'a' && h <= 'f')                     ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F')                     ? h - 'A' + 10
                                                                 : -1;
            if (d < 0) s_.error(line, "bad \\" + std::string(1, e) + " escape");
            cp = cp * 16 + static_cast<uint32_t>(d);
          }
          i += n;
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) s_.error(line, "escape is not a Unicode scalar value");
          icu::UnicodeString u(static_cast<UChar32>(cp));
          u.toUTF8String(out);
          break;
        }
        default:  // Python keeps unknown escapes as written
          out.push_back('\\');
          out.push_back(e);
      }
    }
  }

  std::string src_;
  const Source& s_;
};

// ---------------------------------------------------------------------------------------------
// AST.

struct Expr;
using ExprP = std::shared_ptr<Expr>;

struct Expr {
  enum Kind { Literal, Name, Attr, Item, Slice, Call, Filter, Test, Binary, Unary, Cond, List, Dict } kind;
  int line = 0;
  json literal;
  std::string name;                // Name, Attr, Filter, Test, Binary/Unary operator
  std::vector<ExprP> args;         // operands / call args / list items / dict keys+values
  std::vector<std::pair<std::string, ExprP>> kwargs;
  bool negated = false;            // Test: is not
};

struct Node;
using NodeP = std::shared_ptr<Node>;
using Body = std::vector<NodeP>;

struct Node {
  enum Kind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, Generation } kind;
  int line = 0;
  std::string text;
  ExprP expr;                                 // Output / Set value / For iterable
  std::vector<std::pair<ExprP, Body>> branches;  // If
  Body body, else_body;                        // For / Macro / SetBlock / If else / Generation
  std::vector<std::string> targets;            // For / Set names; Set "ns.attr" as {"ns", "attr"} with attr_target
  bool attr_target = false;
  ExprP filter;                                // For ... if cond
  std::vector<std::pair<std::string, ExprP>> params;  // Macro
};

// ---------------------------------------------------------------------------------------------
// Parser.

class TokenStream {
 public:
  TokenStream(const std::vector<Token>& t, int line, const Source& s) : t_(t), line_(line), s_(s) {}
  const Token& peek(size_t k = 0) const {
    static const Token end{Tok::End, "", 0};
    return pos_ + k < t_.size() ? t_[pos_ + k] : end;
  }
  bool at_end() const { return pos_ >= t_.size(); }
  Token next() {
    if (at_end()) error("unexpected end of tag");
    return t_[pos_++];
  }
  bool is_op(const char* op, size_t k = 0) const { return peek(k).type == Tok::Op && peek(k).text == op; }
  bool is_name(const char* n, size_t k = 0) const { return peek(k).type == Tok::Name && peek(k).text == n; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(const char* n) {
    if (!is_name(n)) return false;
    ++pos_;
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) error(fmt::format("expected '{}', got '{}'", op, peek().text));
  }
  std::string expect_name() {
    if (peek().type != Tok::Name) error(fmt::format("expected a name, got '{}'", peek().text));
    return next().text;
  }
  void expect_end() {
    if (!at_end()) error(fmt::format("unexpected '{}'", peek().text));
  }
  int line() const { return at_end() ? line_ : peek().line; }
  [[noreturn]] void error(const std::string& msg) const { s_.error(line(), msg); }

 private:
  const std::vector<Token>& t_;
  size_t pos_ = 0;
  int line_;
  const Source& s_;
};

class ExprParser {
 public:
  explicit ExprParser(TokenStream& ts) : ts_(ts) {}

  ExprP expression() {
    ExprP e = or_expr();
    if (ts_.accept_name("if")) {
      auto c = make(Expr::Cond);
      ExprP cond = or_expr();
      ExprP other = ts_.accept_name("else") ? expression() : nullptr;
      c->args = {cond, e, other};
      return c;
    }
    return e;
  }
  // A comma-separated list without brackets becomes a tuple (for `for a, b in ...`).
  ExprP tuple_or_expression() {
    ExprP e = expression();
    if (!ts_.is_op(",")) return e;
    auto l = make(Expr::List);
    l->args.push_back(e);
    while (ts_.accept_op(",")) {
      if (ts_.at_end()) break;
      l->args.push_back(expression());
    }
    return l;
  }
  ExprP or_expr() {
    ExprP l = and_expr();
    while (ts_.accept_name("or")) l = binary("or", l, and_expr());
    return l;
  }

 private:
  ExprP make(Expr::Kind k) {
    auto e = std::make_shared<Expr>();
    e->kind = k;
    e->line = ts_.line();
    return e;
  }
  ExprP binary(const std::string& op, ExprP l, ExprP r) {
    auto e = make(Expr::Binary);
    e->name = op;
    e->args = {std::move(l), std::move(r)};
    return e;
  }
  ExprP and_expr() {
    ExprP l = not_expr();
    while (ts_.accept_name("and")) l = binary("and", l, not_expr());
    return l;
  }
  ExprP not_expr() {
    if (ts_.is_name("not")) {
      ts_.next();
      auto e = make(Expr::Unary);
      e->name = "not";
      e->args = {not_expr()};
      return e;
    }
    return compare();
  }
  ExprP compare() {
    ExprP l = math1();
    std::vector<std::pair<std::string, ExprP>> chain;
    while (true) {
      std::string op;
      if (ts_.peek().type == Tok::Op &&
          (ts_.is_op("==") || ts_.is_op("!=") || ts_.is_op("<") || ts_.is_op(">") || ts_.is_op("<=") || ts_.is_op(">="))) {
        op = ts_.next().text;
      } else if (ts_.is_name("in")) {
        ts_.next();
        op = "in";
      } else if (ts_.is_name("not") && ts_.is_name("in", 1)) {
        ts_.next();
        ts_.next();
        op = "not in";
      } else {
        break;
      }
      chain.emplace_back(op, math1());
    }
    if (chain.empty()) return l;
    // a < b < c == (a < b) and (b < c)
    ExprP result;
    ExprP left = l;
    for (auto& [op, right] : chain) {
      ExprP c = binary(op, left, right);
      result = result ? binary("and", result, c) : c;
      left = right;
    }
    return result;
  }
  ExprP math1() {
    ExprP l = concat();
    while (ts_.is_op("+") || ts_.is_op("-")) {
      std::string op = ts_.next().text;
      l = binary(op, l, concat());
    }
    return l;
  }
  ExprP concat() {
    ExprP l = math2();
    while (ts_.accept_op("~")) l = binary("~", l, math2());
    return l;
  }
  ExprP math2() {
    ExprP l = power();
    while (ts_.is_op("*") || ts_.is_op("/") || ts_.is_op("//") || ts_.is_op("%")) {
      std::string op = ts_.next().text;
      l = binary(op, l, power());
    }
    return l;
  }
  ExprP power() {
    ExprP l = unary(true);
    while (ts_.accept_op("**")) l = binary("**", l, unary(true));
    return l;
  }
  ExprP unary(bool with_filter) {
    ExprP node;
    if (ts_.is_op("-") || ts_.is_op("+")) {
      std::string op = ts_.next().text;
      node = make(Expr::Unary);
      node->name = op;
      node->args = {unary(false)};
    } else {
      node = primary();
    }
    node = postfix(node);
    if (with_filter) node = filters(node);
    return node;
  }
  ExprP primary() {
    const Token t = ts_.next();
    if (t.type == Tok::String) {
      std::string s = t.text;
      while (ts_.peek().type == Tok::String) s += ts_.next().text;  // adjacent literals concatenate
      auto e = make(Expr::Literal);
      e->literal = s;
      return e;
    }
    if (t.type == Tok::Int) {
      auto e = make(Expr::Literal);
      try {
        e->literal = std::stoll(t.text);
      } catch (const std::exception&) {
        ts_.error("integer literal out of range: " + t.text);
      }
      return e;
    }
    if (t.type == Tok::Float) {
      auto e = make(Expr::Literal);
      e->literal = std::stod(t.text);
      return e;
    }
    if (t.type == Tok::Name) {
      auto e = make(Expr::Literal);
      if (t.text == "true" || t.text == "True") e->literal = true;
      else if (t.text == "false" || t.text == "False") e->literal = false;
      else if (t.text == "none" || t.text == "None") e->literal = nullptr;
      else {
        e->kind = Expr::Name;
        e->name = t.text;
      }
      return e;
    }
    if (t.type == Tok::Op && t.text == "(") {
      if (ts_.accept_op(")")) {
        auto l = make(Expr::List);
        return l;
      }
      ExprP e = expression();
      if (ts_.is_op(",")) {
        auto l = make(Expr::List);
        l->args.push_back(e);
        while (ts_.accept_op(",")) {
          if (ts_.is_op(")")) break;
          l->args.push_back(expression());
        }
        e = l;
      }
      ts_.expect_op(")");
      return e;
    }
    if (t.type == Tok::Op && t.text == "[") {
      auto l = make(Expr::List);
      while (!ts_.accept_op("]")) {
        l->args.push_back(expression());
        if (!ts_.accept_op(",")) {
          ts_.expect_op("]");
          break;
        }
      }
      return l;
    }
    if (t.type == Tok::Op && t.text == "{") {
      auto d = make(Expr::Dict);
      while (!ts_.accept_op("}")) {
        d->args.push_back(expression());
        ts_.expect_op(":");
        d->args.push_back(expression());
        if (!ts_.accept_op(",")) {
          ts_.expect_op("}");
          break;
        }
      }
      return d;
    }
    ts_.error(fmt::format("unexpected '{}' in an expression", t.text));
  }
  void call_args(ExprP& call) {
    while (!ts_.accept_op(")")) {
      if (ts_.peek().type == Tok::Name && ts_.is_op("=", 1)) {
        std::string k = ts_.next().text;
        ts_.next();
        call->kwargs.emplace_back(k, expression());
      } else {
        if (!call->kwargs.empty()) ts_.error("positional argument after keyword argument");
        call->args.push_back(expression());
      }
      if (!ts_.accept_op(",")) {
        ts_.expect_op(")");
        break;
      }
    }
  }
  ExprP postfix(ExprP node) {
    while (true) {
      if (ts_.accept_op(".")) {
        auto e = make(Expr::Attr);
        const Token t = ts_.next();
        if (t.type != Tok::Name && t.type != Tok::Int) ts_.error("expected an attribute name after '.'");
        e->name = t.text;
        e->args = {node};
        node = e;
      } else if (ts_.accept_op("[")) {
        ExprP a, b, c;
        bool slice = false;
        if (!ts_.is_op(":")) a = expression();
        if (ts_.accept_op(":")) {
          slice = true;
          if (!ts_.is_op("]") && !ts_.is_op(":")) b = expression();
          if (ts_.accept_op(":"))
            if (!ts_.is_op("]")) c = expression();
        }
        ts_.expect_op("]");
        auto e = make(slice ? Expr::Slice : Expr::Item);
        e->args = {node, a, b, c};
        node = e;
      } else if (ts_.accept_op("(")) {
        auto e = make(Expr::Call);
        e->args = {node};
        call_args(e);
        node = e;
      } else {
        return node;
      }
    }
  }
  ExprP filters(ExprP node) {
    while (true) {
      if (ts_.accept_op("|")) {
        auto f = make(Expr::Filter);
        f->name = ts_.expect_name();
        while (ts_.accept_op(".")) f->name += "." + ts_.expect_name();
        f->args = {node};
        if (ts_.accept_op("(")) call_args(f);
        node = f;
      } else if (ts_.is_name("is")) {
        ts_.next();
        auto t = make(Expr::Test);
        t->negated = ts_.accept_name("not");
        const Token name = ts_.next();
        if (name.type == Tok::Name) t->name = name.text;
        else if (name.type == Tok::Op && (name.text == "==" || name.text == "!=" || name.text == "<" ||
                                          name.text == ">" || name.text == "<=" || name.text == ">="))
          t->name = name.text;
        else ts_.error("expected a test name after 'is'");
        t->args = {node};
        const Token& nx = ts_.peek();
        if (ts_.accept_op("(")) {
          call_args(t);
        } else if ((nx.type == Tok::Name || nx.type == Tok::String || nx.type == Tok::Int || nx.type == Tok::Float ||
                    ts_.is_op("[") || ts_.is_op("{")) &&
                   !ts_.is_name("else") && !ts_.is_name("or") && !ts_.is_name("and")) {
          if (ts_.is_name("is")) ts_.error("cannot chain tests with 'is'");
          t->args.push_back(postfix(primary()));  // `is divisibleby 3`, `is equalto 'x'`
        }
        node = t;
      } else if (ts_.accept_op("(")) {
        auto e = make(Expr::Call);
        e->args = {node};
        call_args(e);
        node = e;
      } else {
        return node;
      }
    }
  }

  TokenStream& ts_;
};

class Parser {
 public:
  Parser(std::vector<Piece> pieces, const Source& s) : p_(std::move(pieces)), s_(s) {}

  Body parse() {
    Body b = body({});
    if (pos_ < p_.size()) s_.error(p_[pos_].line, "unexpected '" + block_name(p_[pos_]) + "'");
    return b;
  }

 private:
  static std::string block_name(const Piece& p) { return p.tokens.empty() ? "" : p.tokens[0].text; }

  // Parses nodes until a block tag whose name is in `stop` (left unconsumed) or the end.
  Body body(const std::vector<std::string>& stop) {
    Body out;
    while (pos_ < p_.size()) {
      const Piece& p = p_[pos_];
      if (p.kind == Piece::Text) {
        auto n = std::make_shared<Node>();
        n->kind = Node::Text;
        n->text = p.text;
        n->line = p.line;
        out.push_back(n);
        ++pos_;
        continue;
      }
      if (p.kind == Piece::Var) {
        TokenStream ts(p.tokens, p.line, s_);
        if (ts.at_end()) s_.error(p.line, "empty {{ }}");
        ExprParser ep(ts);
        auto n = std::make_shared<Node>();
        n->kind = Node::Output;
        n->line = p.line;
        n->expr = ep.expression();
        ts.expect_end();
        out.push_back(n);
        ++pos_;
        continue;
      }
      if (p.tokens.empty()) s_.error(p.line, "empty {% %}");
      const std::string name = block_name(p);
      if (std::find(stop.begin(), stop.end(), name) != stop.end()) return out;
      out.push_back(statement());
    }
    if (!stop.empty()) s_.error(p_.empty() ? 0 : p_.back().line, "missing {% " + stop.back() + " %}");
    return out;
  }

  void end_tag(const std::string& name) {
    if (pos_ >= p_.size() || block_name(p_[pos_]) != name) s_.error(p_.empty() ? 0 : p_.back().line, "missing {% " + name + " %}");
    ++pos_;
  }

  NodeP statement() {
    const Piece& p = p_[pos_++];
    TokenStream ts(p.tokens, p.line, s_);
    const std::string name = ts.next().text;
    auto n = std::make_shared<Node>();
    n->line = p.line;
    ExprParser ep(ts);
    if (name == "if") {
      n->kind = Node::If;
      ExprP cond = ep.expression();
      ts.expect_end();
      while (true) {
        Body b = body({"elif", "else", "endif"});
        n->branches.emplace_back(cond, std::move(b));
        const Piece& q = p_[pos_++];
        const std::string k = block_name(q);
        if (k == "endif") break;
        TokenStream ts2(q.tokens, q.line, s_);
        ts2.next();
        if (k == "else") {
          ts2.expect_end();
          n->else_body = body({"endif"});
          end_tag("endif");
          break;
        }
        ExprParser ep2(ts2);
        cond = ep2.expression();
        ts2.expect_end();
      }
      return n;
    }
    if (name == "for") {
      n->kind = Node::For;
      n->targets.push_back(ts.expect_name());
      while (ts.accept_op(",")) n->targets.push_back(ts.expect_name());
      if (!ts.accept_name("in")) ts.error("expected 'in' in a for statement");
      n->expr = ep.or_expr();
      if (ts.accept_name("if")) n->filter = ep.expression();
      if (ts.accept_name("recursive")) ts.error("recursive for loops are not supported");
      ts.expect_end();
      n->body = body({"else", "endfor"});
      if (block_name(p_[pos_]) == "else") {
        ++pos_;
        n->else_body = body({"endfor"});
      }
      end_tag("endfor");
      return n;
    }
    if (name == "set") {
      std::string target = ts.expect_name();
      n->targets.push_back(target);
      if (ts.accept_op(".")) {
        n->attr_target = true;
        n->targets.push_back(ts.expect_name());
      } else {
        while (ts.accept_op(",")) n->targets.push_back(ts.expect_name());
      }
      if (ts.at_end()) {
        if (n->attr_target || n->targets.size() != 1) ts.error("block set takes one name");
        n->kind = Node::SetBlock;
        n->body = body({"endset"});
        end_tag("endset");
        return n;
      }
      if (ts.is_op("|")) ts.error("filtered block set is not supported");
      ts.expect_op("=");
      n->kind = Node::Set;
      n->expr = ep.tuple_or_expression();
      ts.expect_end();
      return n;
    }
    if (name == "macro") {
      n->kind = Node::Macro;
      n->targets.push_back(ts.expect_name());
      ts.expect_op("(");
      while (!ts.accept_op(")")) {
        std::string param = ts.expect_name();
        ExprP def;
        if (ts.accept_op("=")) def = ep.expression();
        n->params.emplace_back(param, def);
        if (!ts.accept_op(",")) {
          ts.expect_op(")");
          break;
        }
      }
      ts.expect_end();
      n->body = body({"endmacro"});
      end_tag("endmacro");
      return n;
    }
    if (name == "break" || name == "continue") {
      ts.expect_end();
      n->kind = name == "break" ? Node::Break : Node::Continue;
      return n;
    }
    if (name == "generation") {
      ts.expect_end();
      n->kind = Node::Generation;
      n->body = body({"endgeneration"});
      end_tag("endgeneration");
      return n;
    }
    if (name.rfind("end", 0) == 0 || name == "else" || name == "elif")
      ts.error("unexpected {% " + name + " %} (no open block it could close)");
    ts.error("unsupported statement {% " + name + " %}");
  }

  std::vector<Piece> p_;
  size_t pos_ = 0;
  const Source& s_;
};

// ---------------------------------------------------------------------------------------------
// Evaluation.

struct BreakSignal {};
struct ContinueSignal {};

class Interpreter {
 public:
  Interpreter(const Source& s, json context) : s_(s) {
    scopes_.emplace_back();
    for (auto it = context.begin(); it != context.end(); ++it) scopes_[0][it.key()] = Value(it.value());
    install_globals();
  }

  std::string render(const Body& body) {
    std::string out;
    exec(body, out);
    return out;
  }

 private:
  using Scope = std::unordered_map<std::string, Value>;

  [[noreturn]] void error(int line, const std::string& msg) const { s_.error(line, msg); }

  void step(int line) {
    if (++steps_ > kMaxSteps) error(line, "template runs too long (more than 1M steps)");
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undef(name);
  }

  void install_globals() {
    Scope& g = scopes_[0];
    const Source& s = s_;
    g["raise_exception"] = Value::function([&s](const Args& a, const Kwargs&) -> Value {
      const std::string msg = a.empty() ? "" : a[0].undefined ? "" : py_str(a[0].j);
      fail(Where{s.name, 0, "chat_template"}, "chat template raised: {}", msg);
    });
    g["range"] = Value::function([this](const Args& a, const Kwargs&) -> Value {
      int64_t start = 0, stop = 0, stepv = 1;
      auto num = [&](const Value& v) {
        if (!v.j.is_number_integer()) error(0, "range() takes integers");
        return v.j.get<int64_t>();
      };
      if (a.size() == 1) stop = num(a[0]);
      else if (a.size() >= 2) start = num(a[0]), stop = num(a[1]);
      if (a.size() == 3) stepv = num(a[2]);
      if (a.empty() || a.size() > 3 || stepv == 0) error(0, "range() takes 1 to 3 integers, step != 0");
      const double len = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(stepv));
      if (len > static_cast<double>(kMaxRange)) error(0, "range() too long (over 10M items)");
      json out = json::array();
      for (int64_t i = start; stepv > 0 ? i < stop : i > stop; i += stepv) out.push_back(i);
      return out;
    });
    auto kw_object = [](const Args& a, const Kwargs& kw) -> Value {
      json o = json::object();
      if (!a.empty() && a[0].j.is_object()) o = a[0].j;
      for (const auto& [k, v] : kw) o[k] = v.j;
      return o;
    };
    g["namespace"] = Value::function(kw_object);
    g["dict"] = Value::function(kw_object);
    g["strftime_now"] = Value::function([this](const Args& a, const Kwargs&) -> Value {
      if (a.size() != 1 || !a[0].j.is_string()) error(0, "strftime_now() takes one format string");
      std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[256];
      size_t n = std::strftime(buf, sizeof buf, a[0].j.get<std::string>().c_str(), &tm);
      return json(std::string(buf, n));
    });
  }

  // -- statements --

  void emit(std::string& out, std::string_view s, int line) {
    if (out.size() + s.size() > kMaxOutput) error(line, "rendered prompt is over 64 MiB");
    out.append(s);
  }

  void exec(const Body& body, std::string& out) {
    for (const NodeP& n : body) exec(*n, out);
  }

  void exec(const Node& n, std::string& out) {
    step(n.line);
    switch (n.kind) {
      case Node::Text: emit(out, n.text, n.line); return;
      case Node::Output: {
        Value v = eval(*n.expr);
        if (v.undefined) return;  // Jinja's default Undefined prints as ""
        if (v.fn) error(n.line, "cannot print a function");
        emit(out, py_str(v.j), n.line);
        return;
      }
      case Node::If:
        for (const auto& [cond, body] : n.branches)
          if (truthy(eval(*cond))) {
            exec(body, out);
            return;
          }
        exec(n.else_body, out);
        return;
      case Node::For: exec_for(n, out); return;
      case Node::Set: {
        Value v = eval(*n.expr);
        if (n.attr_target) {
          set_attr(n, n.targets[0], n.targets[1], v);
        } else if (n.targets.size() == 1) {
          scopes_.back()[n.targets[0]] = v;
        } else {
          if (!v.j.is_array() || v.j.size() != n.targets.size())
            error(n.line, fmt::format("cannot unpack into {} names", n.targets.size()));
          for (size_t i = 0; i < n.targets.size(); ++i) scopes_.back()[n.targets[i]] = Value(v.j[i]);
        }
        return;
      }
      case Node::SetBlock: {
        std::string s;
        exec(n.body, s);
        scopes_.back()[n.targets[0]] = Value(s);
        return;
      }
      case Node::Macro: define_macro(n); return;
      case Node::Break: throw BreakSignal{};
      case Node::Continue: throw ContinueSignal{};
      case Node::Generation: exec(n.body, out); return;
    }
  }

  void set_attr(const Node& n, const std::string& var, const std::string& attr, const Value& v) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(var);
      if (f == it->end()) continue;
      if (!f->second.j.is_object()) error(n.line, "cannot set attribute '" + attr + "' of '" + var + "' (not a namespace)");
      f->second.j[attr] = v.j;
      return;
    }
    error(n.line, "'" + var + "' is undefined");
  }

  json iterable_items(const Value& v, int line) {
    if (v.undefined) return json::array();
    const json& j = v.j;
    if (j.is_array()) return j;
    if (j.is_object()) {
      json keys = json::array();
      for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
      return keys;
    }
    if (j.is_string()) {
      json chars = json::array();
      for (auto& c : code_points(j.get<std::string>())) chars.push_back(c);
      return chars;
    }
    error(line, "'" + py_str(j) + "' is not iterable");
  }

  void exec_for(const Node& n, std::string& out) {
    json items = iterable_items(eval(*n.expr), n.line);
    scopes_.emplace_back();
    auto bind = [&](const json& item) {
      Scope& sc = scopes_.back();
      if (n.targets.size() == 1) {
        sc[n.targets[0]] = Value(item);
      } else {
        if (!item.is_array() || item.size() != n.targets.size())
          error(n.line, fmt::format("cannot unpack {} into {} names", py_str(item, true).substr(0, 60), n.targets.size()));
        for (size_t i = 0; i < n.targets.size(); ++i) sc[n.targets[i]] = Value(item[i]);
      }
    };
    if (n.filter) {
      json kept = json::array();
      for (const auto& item : items) {
        bind(item);
        if (truthy(eval(*n.filter))) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const size_t len = items.size();
    json loop = {{"index0", 0}, {"index", 1}, {"revindex0", 0}, {"revindex", 0}, {"first", true},
                 {"last", false}, {"length", len}, {"depth", 1}, {"depth0", 0}};
    try {
      for (size_t i = 0; i < len; ++i) {
        step(n.line);
        // Each iteration starts from the enclosing scopes (Jinja: a set inside the body does not
        // survive into the next iteration); the loop object is reused, not rebuilt.
        Scope& sc = scopes_.back();
        Value loop_value;
        auto old = sc.find("loop");
        if (old != sc.end()) loop_value = std::move(old->second);
        sc.clear();
        bind(items[i]);
        json& l = loop_value.j;
        if (l.is_null()) l = loop;
        l["index0"] = i;
        l["index"] = i + 1;
        l["revindex0"] = len - 1 - i;
        l["revindex"] = len - i;
        l["first"] = i == 0;
        l["last"] = i + 1 == len;
        if (i > 0) l["previtem"] = items[i - 1];
        if (i + 1 < len) l["nextitem"] = items[i + 1];
        else l.erase("nextitem");
        sc["loop"] = std::move(loop_value);
        try {
          exec(n.body, out);
        } catch (const ContinueSignal&) {
        }
      }
    } catch (const BreakSignal&) {
    } catch (...) {
      scopes_.pop_back();
      throw;
    }
    scopes_.pop_back();
    if (len == 0) exec(n.else_body, out);
  }

  void define_macro(const Node& n) {
    const Node* node = &n;
    scopes_.back()[n.targets[0]] = Value::function([this, node](const Args& a, const Kwargs& kw) -> Value {
      if (++depth_ > kMaxDepth) error(node->line, "macro calls nested too deep");
      if (a.size() > node->params.size()) error(node->line, "macro '" + node->targets[0] + "' takes " +
                                                           std::to_string(node->params.size()) + " arguments");
      Scope sc;
      for (size_t i = 0; i < node->params.size(); ++i) {
        const std::string& pname = node->params[i].first;
        const ExprP& pdef = node->params[i].second;
        if (i < a.size()) {
          sc[pname] = a[i];
          continue;
        }
        auto k = std::find_if(kw.begin(), kw.end(), [&](const auto& p) { return p.first == pname; });
        if (k != kw.end()) sc[pname] = k->second;
        else if (pdef) sc[pname] = eval(*pdef);
        else sc[pname] = Value::undef(pname);
      }
      for (const auto& kv : kw)
        if (std::none_of(node->params.begin(), node->params.end(), [&](const auto& p) { return p.first == kv.first; }))
          error(node->line, "macro '" + node->targets[0] + "' has no argument '" + kv.first + "'");
      // A macro sees the globals and its arguments (not the caller's loop variables).
      std::vector<Scope> saved;
      saved.swap(scopes_);
      scopes_.push_back(saved.front());
      scopes_.push_back(std::move(sc));
      std::string out;
      try {
        exec(node->body, out);
      } catch (...) {
        scopes_.swap(saved);
        --depth_;
        throw;
      }
      scopes_.swap(saved);
      --depth_;
      return json(out);
    });
  }

  // -- expressions --

  const json& need_defined(const Value& v, int line, const char* what) {
    if (v.undefined) error(line, fmt::format("'{}' is undefined ({})", v.undefined_name, what));
    if (v.fn) error(line, fmt::format("a function cannot be used here ({})", what));
    return v.j;
  }

  Value eval(const Expr& e) {
    step(e.line);
    if (++depth_ > kMaxDepth) error(e.line, "expression nested too deep");
    struct Guard {
      int& d;
      ~Guard() { --d; }
    } guard{depth_};
    switch (e.kind) {
      case Expr::Literal: return e.literal;
      case Expr::Name: return lookup(e.name);
      case Expr::List: {
        json l = json::array();
        for (const auto& a : e.args) l.push_back(need_defined(eval(*a), e.line, "list item"));
        return l;
      }
      case Expr::Dict: {
        json d = json::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i]);
          if (!k.j.is_string()) error(e.line, "dict keys must be strings");
          d[k.j.get<std::string>()] = need_defined(eval(*e.args[i + 1]), e.line, "dict value");
        }
        return d;
      }
      case Expr::Attr: return get_attr(eval(*e.args[0]), e.name, e.line);
      case Expr::Item: {
        Value obj = eval(*e.args[0]);
        Value key = eval(*e.args[1]);
        return get_item(obj, key, e.line);
      }
      case Expr::Slice: return slice(e);
      case Expr::Call: {
        Value f = eval(*e.args[0]);
        Args args;
        for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
        Kwargs kw;
        for (const auto& [k, v] : e.kwargs) kw.emplace_back(k, eval(*v));
        if (!f.fn) {
          const std::string what = e.args[0]->kind == Expr::Name ? e.args[0]->name
                                   : e.args[0]->kind == Expr::Attr ? "." + e.args[0]->name
                                                                   : "expression";
          error(e.line, f.undefined ? "unsupported or undefined function '" + what + "'"
                                    : "'" + what + "' is not callable");
        }
        return (*f.fn)(args, kw);
      }
      case Expr::Filter: return filter(e);
      case Expr::Test: {
        bool r = test(e);
        return json(e.negated ? !r : r);
      }
      case Expr::Unary: {
        if (e.name == "not") return json(!truthy(eval(*e.args[0])));
        const Value operand = eval(*e.args[0]);
        const json& v = need_defined(operand, e.line, "unary operator");
        if (!v.is_number()) error(e.line, "unary " + e.name + " of a non-number");
        if (e.name == "+") return v;
        if (v.is_number_float()) return json(-v.get<double>());
        return json(-v.get<int64_t>());
      }
      case Expr::Cond: {
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        if (e.args[2]) return eval(*e.args[2]);
        return Value::undef("conditional expression without else");
      }
      case Expr::Binary: return binary(e);
    }
    error(e.line, "internal: bad expression");
  }

  static bool equal(const Value& a, const Value& b) {
    if (a.undefined || b.undefined) return a.undefined && b.undefined;
    if (a.fn || b.fn) return a.fn == b.fn;
    if (a.j.is_boolean() != b.j.is_boolean() && a.j.is_number() != b.j.is_number()) return false;
    return a.j == b.j;
  }

  Value binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value l = eval(*e.args[0]);
      return truthy(l) ? eval(*e.args[1]) : l;
    }
    if (op == "or") {
      Value l = eval(*e.args[0]);
      return truthy(l) ? l : eval(*e.args[1]);
    }
    Value lv = eval(*e.args[0]);
    Value rv = eval(*e.args[1]);
    if (op == "==") return json(equal(lv, rv));
    if (op == "!=") return json(!equal(lv, rv));
    if (op == "~") {
      auto s = [&](const Value& v) { return v.undefined ? std::string() : py_str(need_defined(v, e.line, "~")); };
      return json(s(lv) + s(rv));
    }
    if (op == "in" || op == "not in") {
      bool r = contains(rv, lv, e.line);
      return json(op == "in" ? r : !r);
    }
    const json& l = need_defined(lv, e.line, op.c_str());
    const json& r = need_defined(rv, e.line, op.c_str());
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (l.is_number() && r.is_number()) {
        double a = l.get<double>(), b = r.get<double>();
        c = a < b ? -1 : a > b ? 1 : 0;
      } else if (l.is_string() && r.is_string()) {
        c = l.get_ref<const std::string&>().compare(r.get_ref<const std::string&>());
      } else {
        error(e.line, fmt::format("cannot compare {} and {} with {}", l.type_name(), r.type_name(), op));
      }
      return json(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    if (op == "+") {
      if (l.is_string() && r.is_string()) return json(l.get<std::string>() + r.get<std::string>());
      if (l.is_array() && r.is_array()) {
        json out = l;
        for (const auto& x : r) out.push_back(x);
        return out;
      }
    }
    if (op == "*" && ((l.is_string() && r.is_number_integer()) || (l.is_number_integer() && r.is_string()))) {
      const std::string& s = l.is_string() ? l.get_ref<const std::string&>() : r.get_ref<const std::string&>();
      int64_t n = l.is_string() ? r.get<int64_t>() : l.get<int64_t>();
      if (n > 0 && s.size() * static_cast<size_t>(n) > kMaxOutput) error(e.line, "string repetition too large");
      std::string out;
      for (int64_t i = 0; i < n; ++i) out += s;
      return json(out);
    }
    if (!l.is_number() || !r.is_number() || l.is_boolean() || r.is_boolean())
      error(e.line, fmt::format("unsupported operand types for {}: {} and {}", op, l.type_name(), r.type_name()));
    const bool ints = l.is_number_integer() && r.is_number_integer();
    if (ints && op != "/") {
      int64_t a = l.get<int64_t>(), b = r.get<int64_t>(), v = 0;
      // Python's integers do not overflow; loom's are 64-bit, so an overflow is an error.
      auto checked = [&](bool overflow) {
        if (overflow) error(e.line, fmt::format("integer overflow in {} {} {}", a, op, b));
        return json(v);
      };
      if (op == "+") return checked(__builtin_add_overflow(a, b, &v));
      if (op == "-") return checked(__builtin_sub_overflow(a, b, &v));
      if (op == "*") return checked(__builtin_mul_overflow(a, b, &v));
      if (op == "**") {
        if (b < 0) return json(std::pow(static_cast<double>(a), static_cast<double>(b)));
        v = 1;
        if (a == 0 || a == 1) return json(b == 0 ? int64_t{1} : a);
        if (a == -1) return json(b % 2 == 0 ? int64_t{1} : int64_t{-1});
        for (int64_t i = 0; i < b; ++i)  // |a| >= 2: overflows within 63 steps
          if (__builtin_mul_overflow(v, a, &v)) return checked(true);
        return json(v);
      }
      if (b == 0) error(e.line, "division by zero");
      if (a == std::numeric_limits<int64_t>::min() && b == -1) return checked(true);
      int64_t q = a / b, m = a % b;
      if (m != 0 && ((m < 0) != (b < 0))) q -= 1, m += b;  // Python floors
      if (op == "//") return json(q);
      if (op == "%") return json(m);
    }
    double a = l.get<double>(), b = r.get<double>();
    if (op == "+") return json(a + b);
    if (op == "-") return json(a - b);
    if (op == "*") return json(a * b);
    if (op == "**") return json(std::pow(a, b));
    if (b == 0) error(e.line, "division by zero");
    if (op == "/") return json(a / b);
    if (op == "//") return json(std::floor(a / b));
    if (op == "%") return json(a - std::floor(a / b) * b);
    error(e.line, "unsupported operator " + op);
  }

  bool contains(const Value& container, const Value& item, int line) {
    const json& c = need_defined(container, line, "in");
    if (c.is_string()) {
      if (!item.j.is_string()) error(line, "'in <string>' needs a string on the left");
      return c.get_ref<const std::string&>().find(item.j.get_ref<const std::string&>()) != std::string::npos;
    }
    if (c.is_array()) {
      for (const auto& x : c)
        if (equal(Value(x), item)) return true;
      return false;
    }
    if (c.is_object()) return item.j.is_string() && c.contains(item.j.get<std::string>());
    error(line, fmt::format("'in' needs a string, list or dict, got {}", c.type_name()));
  }

  Value get_item(const Value& obj, const Value& key, int line) {
    const json& o = need_defined(obj, line, "subscript");
    const json& k = need_defined(key, line, "subscript");
    if (o.is_object()) {
      if (k.is_string()) {
        auto it = o.find(k.get<std::string>());
        if (it != o.end()) return *it;
        return method(obj, k.get<std::string>(), line, Value::undef(k.get<std::string>()));
      }
      return Value::undef(py_str(k));
    }
    if (o.is_array() || o.is_string()) {
      if (!k.is_number_integer()) {
        if (k.is_string()) return method(obj, k.get<std::string>(), line, Value::undef(k.get<std::string>()));
        error(line, "list indices must be integers");
      }
      int64_t i = k.get<int64_t>();
      if (o.is_array()) {
        const int64_t n = static_cast<int64_t>(o.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undef("index " + std::to_string(k.get<int64_t>()));
        return o[static_cast<size_t>(i)];
      }
      auto cps = code_points(o.get<std::string>());
      const int64_t n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undef("index " + std::to_string(k.get<int64_t>()));
      return json(cps[static_cast<size_t>(i)]);
    }
    error(line, fmt::format("cannot subscript a {}", o.type_name()));
  }

  Value get_attr(const Value& obj, const std::string& name, int line) {
    if (obj.undefined) error(line, fmt::format("'{}' is undefined (attribute '{}')", obj.undefined_name, name));
    // Jinja tries the attribute (a method) first, then the item.
    Value m = method(obj, name, line, Value::undef(name));
    if (!m.undefined) return m;
    if (obj.j.is_object()) {
      auto it = obj.j.find(name);
      if (it != obj.j.end()) return *it;
    }
    return Value::undef(name);
  }

  // Bound methods of str / dict / list values (Python's); `fallback` when there is none.
  Value method(const Value& obj, const std::string& name, int line, Value fallback) {
    const json self = obj.j;
    auto str_arg = [this, line](const Args& a, size_t i, const char* fn) -> std::optional<std::string> {
      if (i >= a.size() || a[i].undefined || a[i].j.is_null()) return std::nullopt;
      if (!a[i].j.is_string()) error(line, std::string(fn) + "() needs a string argument");
      return a[i].j.get<std::string>();
    };
    if (self.is_string()) {
      const std::string s = self.get<std::string>();
      if (name == "strip" || name == "lstrip" || name == "rstrip")
        return Value::function([=](const Args& a, const Kwargs&) -> Value {
          return json(py_strip(s, str_arg(a, 0, "strip"), name != "rstrip", name != "lstrip"));
        });
      if (name == "upper" || name == "lower" || name == "title" || name == "capitalize")
        return Value::function([=](const Args&, const Kwargs&) -> Value {
          if (name == "capitalize") {
            auto cps = code_points(s);
            std::string out = cps.empty() ? "" : icu_case(cps[0], 1);
            std::string rest;
            for (size_t i = 1; i < cps.size(); ++i) rest += cps[i];
            return json(out + icu_case(rest, 0));
          }
          return json(icu_case(s, name == "lower" ? 0 : name == "upper" ? 1 : 2));
        });
      if (name == "startswith" || name == "endswith")
        return Value::function([=](const Args& a, const Kwargs&) -> Value {
          if (a.empty()) error(line, name + "() takes an argument");
          std::vector<std::string> opts;
          if (a[0].j.is_array()) {
            for (const auto& x : a[0].j)
              if (x.is_string()) opts.push_back(x.get<std::string>());
          } else if (a[0].j.is_string()) {
            opts.push_back(a[0].j.get<std::string>());
          } else {
            error(line, name + "() needs a string");
          }
          for (const auto& p : opts) {
            if (p.size() > s.size()) continue;
            if (name == "startswith" ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0)
              return json(true);
          }
          return json(false);
        });
      if (name == "split")
        return Value::function([=](const Args& a, const Kwargs& kw) -> Value {
          std::optional<std::string> sep = str_arg(a, 0, "split");
          int64_t maxsplit = -1;
          if (a.size() > 1 && a[1].j.is_number_integer()) maxsplit = a[1].j.get<int64_t>();
          for (const auto& [k, v] : kw) {
            if (k == "sep" && v.j.is_string()) sep = v.j.get<std::string>();
            else if (k == "maxsplit" && v.j.is_number_integer()) maxsplit = v.j.get<int64_t>();
          }
          json out = json::array();
          if (sep) {
            if (sep->empty()) error(line, "split(): empty separator");
            size_t pos = 0;
            while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
              size_t hit = s.find(*sep, pos);
              if (hit == std::string::npos) break;
              out.push_back(s.substr(pos, hit - pos));
              pos = hit + sep->size();
            }
            out.push_back(s.substr(pos));
          } else {
            std::string_view rest = core::lstrip_unicode_space(s);
            while (!rest.empty()) {
              if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
                out.push_back(std::string(core::rstrip_unicode_space(rest)));
                break;
              }
              size_t i = 0;
              while (i < rest.size() && core::whitespace_length_at(rest, i) == 0) {
                const unsigned char c = static_cast<unsigned char>(rest[i]);
                i += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
              }
              i = std::min(i, rest.size());
              out.push_back(std::string(rest.substr(0, i)));
              rest = core::lstrip_unicode_space(rest.substr(i));
            }
          }
          return out;
        });
      if (name == "replace")
        return Value::function([=](const Args& a, const Kwargs&) -> Value {
          if (a.size() < 2 || !a[0].j.is_string() || !a[1].j.is_string()) error(line, "replace() takes two strings");
          int64_t count = a.size() > 2 && a[2].j.is_number_integer() ? a[2].j.get<int64_t>() : -1;
          return json(replace_all(s, a[0].j.get<std::string>(), a[1].j.get<std::string>(), count, line));
        });
      if (name == "find" || name == "count")
        return Value::function([=](const Args& a, const Kwargs&) -> Value {
          auto sub = str_arg(a, 0, name.c_str());
          if (!sub) error(line, name + "() takes a string");
          if (name == "find") {
            size_t pos = s.find(*sub);
            return pos == std::string::npos ? json(-1) : json(static_cast<int64_t>(code_point_count(s.substr(0, pos))));
          }
          if (sub->empty()) return json(static_cast<int64_t>(code_point_count(s) + 1));
          int64_t n = 0;
          for (size_t pos = s.find(*sub); pos != std::string::npos; pos = s.find(*sub, pos + sub->size())) ++n;
          return json(n);
        });
      if (name == "join")
        return Value::function([=](const Args& a, const Kwargs&) -> Value {
          if (a.empty() || !a[0].j.is_array()) error(line, "join() takes a list");
          std::string out;
          bool first = true;
          for (const auto& x : a[0].j) {
            if (!x.is_string()) error(line, "join() of a non-string item");
            if (!first) out += s;
            out += x.get<std::string>();
            first = false;
          }
          return json(out);
        });
    } else if (self.is_object()) {
      if (name == "items" || name == "keys" || name == "values")
        return Value::function([=](const Args&, const Kwargs&) -> Value {
          json out = json::array();
          for (auto it = self.begin(); it != self.end(); ++it) {
            if (name == "items") out.push_back(json::array({it.key(), it.value()}));
            else if (name == "keys") out.push_back(it.key());
            else out.push_back(it.value());
          }
          return out;
        });
      if (name == "get")
        return Value::function([=](const Args& a, const Kwargs&) -> Value {
          if (a.empty() || !a[0].j.is_string()) return a.size() > 1 ? a[1] : Value(json(nullptr));
          auto it = self.find(a[0].j.get<std::string>());
          if (it != self.end()) return *it;
          return a.size() > 1 ? a[1] : Value(json(nullptr));
        });
    }
    return fallback;
  }

  std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count, int line) {
    if (from.empty()) error(line, "replace() with an empty pattern is not supported");
    std::string out;
    size_t pos = 0;
    int64_t n = 0;
    while (count < 0 || n < count) {
      size_t hit = s.find(from, pos);
      if (hit == std::string::npos) break;
      out.append(s, pos, hit - pos);
      out += to;
      if (out.size() > kMaxOutput) error(line, "replace() result too large");
      pos = hit + from.size();
      ++n;
    }
    out.append(s, pos, std::string::npos);
    return out;
  }

  Value slice(const Expr& e) {
    Value objv = eval(*e.args[0]);
    const json& o = need_defined(objv, e.line, "slice");
    auto opt = [&](const ExprP& x) -> std::optional<int64_t> {
      if (!x) return std::nullopt;
      Value v = eval(*x);
      if (v.j.is_null()) return std::nullopt;
      if (!v.j.is_number_integer()) error(e.line, "slice indices must be integers");
      return v.j.get<int64_t>();
    };
    std::optional<int64_t> a = opt(e.args[1]), b = opt(e.args[2]), c = opt(e.args[3]);
    const int64_t stepv = c.value_or(1);
    if (stepv == 0) error(e.line, "slice step cannot be zero");
    std::vector<json> items;
    if (o.is_array()) {
      for (const auto& x : o) items.push_back(x);
    } else if (o.is_string()) {
      for (auto& cp : code_points(o.get<std::string>())) items.push_back(cp);
    } else {
      error(e.line, fmt::format("cannot slice a {}", o.type_name()));
    }
    const int64_t n = static_cast<int64_t>(items.size());
    auto clamp = [&](std::optional<int64_t> v, int64_t def) {
      if (!v) return def;
      int64_t x = *v;
      if (x < 0) x += n;
      if (stepv > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    const int64_t start = clamp(a, stepv > 0 ? 0 : n - 1), stop = clamp(b, stepv > 0 ? n : -1);
    json out = json::array();
    std::string sout;
    for (int64_t i = start; stepv > 0 ? i < stop : i > stop; i += stepv) {
      if (o.is_string()) sout += items[static_cast<size_t>(i)].get<std::string>();
      else out.push_back(items[static_cast<size_t>(i)]);
    }
    if (o.is_string()) return json(sout);
    return out;
  }

  bool test(const Expr& e) {
    const std::string& t = e.name;
    Value v = eval(*e.args[0]);
    Args args;
    for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
    if (t == "defined") return !v.undefined;
    if (t == "undefined") return v.undefined;
    if (t == "callable") return v.fn != nullptr;
    const json& j = v.j;
    if (v.undefined) {
      if (t == "none" || t == "string" || t == "number" || t == "integer" || t == "float" || t == "boolean" ||
          t == "mapping" || t == "iterable" || t == "sequence" || t == "true" || t == "false")
        return t == "iterable";  // Jinja's Undefined is iterable (empty)
    }
    if (t == "none") return j.is_null();
    if (t == "string") return j.is_string();
    if (t == "number") return j.is_number();
    if (t == "integer") return j.is_number_integer();
    if (t == "float") return j.is_number_float();
    if (t == "boolean") return j.is_boolean();
    if (t == "true") return j.is_boolean() && j.get<bool>();
    if (t == "false") return j.is_boolean() && !j.get<bool>();
    if (t == "mapping") return j.is_object();
    if (t == "iterable") return j.is_array() || j.is_object() || j.is_string();
    if (t == "sequence") return j.is_array() || j.is_object() || j.is_string();
    if (t == "lower" || t == "upper") {
      if (!j.is_string()) return false;
      return t == "lower" ? is_lower_str(j.get<std::string>()) : is_upper_str(j.get<std::string>());
    }
    if (t == "odd" || t == "even" || t == "divisibleby") {
      if (!j.is_number_integer()) error(e.line, "test '" + t + "' needs an integer");
      int64_t x = j.get<int64_t>();
      if (t == "odd") return x % 2 != 0;
      if (t == "even") return x % 2 == 0;
      if (args.empty() || !args[0].j.is_number_integer() || args[0].j.get<int64_t>() == 0)
        error(e.line, "divisibleby needs a non-zero integer");
      return x % args[0].j.get<int64_t>() == 0;
    }
    if (args.size() != 1 && (t == "equalto" || t == "eq" || t == "==" || t == "ne" || t == "!=" || t == "lt" ||
                             t == "<" || t == "le" || t == "<=" || t == "gt" || t == ">" || t == "ge" ||
                             t == ">=" || t == "in"))
      error(e.line, "test '" + t + "' takes one argument");
    if (t == "equalto" || t == "eq" || t == "==") return equal(v, args[0]);
    if (t == "ne" || t == "!=") return !equal(v, args[0]);
    if (t == "in") return contains(args[0], v, e.line);
    if (t == "lt" || t == "<" || t == "le" || t == "<=" || t == "gt" || t == ">" || t == "ge" || t == ">=") {
      Expr cmp;
      cmp.kind = Expr::Binary;
      cmp.line = e.line;
      cmp.name = t == "lt" ? "<" : t == "le" ? "<=" : t == "gt" ? ">" : t == "ge" ? ">=" : t;
      auto lit = [](const Value& x) {
        auto p = std::make_shared<Expr>();
        p->kind = Expr::Literal;
        p->literal = x.j;
        return p;
      };
      cmp.args = {lit(v), lit(args[0])};
      return truthy(binary(cmp));
    }
    error(e.line, "unsupported test '" + t + "'");
  }

  // Applies the test named by args (select/reject family) to x.
  bool apply_named_test(const std::string& name, const Value& x, const Args& extra, int line) {
    Expr t;
    t.kind = Expr::Test;
    t.line = line;
    t.name = name;
    auto lit = [](const Value& v) {
      auto p = std::make_shared<Expr>();
      p->kind = Expr::Literal;
      p->literal = v.j;
      return p;
    };
    if (x.undefined) {
      auto p = std::make_shared<Expr>();
      p->kind = Expr::Name;
      p->name = "\x01undefined";
      t.args.push_back(p);
    } else {
      t.args.push_back(lit(x));
    }
    for (const auto& a : extra) t.args.push_back(lit(a));
    return test(t);
  }

  Value filter(const Expr& e) {
    const std::string& f = e.name;
    Value v = eval(*e.args[0]);
    Args a;
    for (size_t i = 1; i < e.args.size(); ++i) a.push_back(eval(*e.args[i]));
    auto kwarg = [&](const char* k) -> std::optional<Value> {
      for (const auto& [name, expr] : e.kwargs)
        if (name == k) return eval(*expr);
      return std::nullopt;
    };
    for (const auto& kwarg_entry : e.kwargs) {
      const std::string& name = kwarg_entry.first;
      static const char* kKnown[] = {"indent", "attribute", "default", "boolean", "separators", "sort_keys",
                                     "ensure_ascii", "first", "blank", "case_sensitive", "reverse", "precision",
                                     "method", "width", "by"};
      if (std::none_of(std::begin(kKnown), std::end(kKnown), [&](const char* k) { return name == k; }))
        error(e.line, "unsupported argument '" + name + "' of filter '" + f + "'");
    }
    if (f == "default" || f == "d") {
      bool boolean = (a.size() > 1 && truthy(a[1])) || (kwarg("boolean") && truthy(*kwarg("boolean")));
      Value def = a.empty() ? (kwarg("default") ? *kwarg("default") : Value(json(""))) : a[0];
      if (v.undefined || (boolean && !truthy(v))) return def;
      return v;
    }
    if (f == "safe") return v;
    if (f == "tojson") {
      const json& j = need_defined(v, e.line, "tojson");
      std::optional<int> indent;
      auto ind = a.empty() ? kwarg("indent") : std::optional<Value>(a[0]);
      if (ind && ind->j.is_number_integer()) indent = static_cast<int>(ind->j.get<int64_t>());
      if (kwarg("separators") || kwarg("sort_keys") || kwarg("ensure_ascii"))
        error(e.line, "tojson(separators/sort_keys/ensure_ascii) is not supported");
      std::string out;
      json_dumps(j, indent, 0, out);
      return json(out);
    }
    if (f == "length" || f == "count") {
      const json& j = need_defined(v, e.line, f.c_str());
      if (j.is_string()) return json(static_cast<int64_t>(code_point_count(j.get<std::string>())));
      if (j.is_array() || j.is_object()) return json(static_cast<int64_t>(j.size()));
      error(e.line, fmt::format("filter '{}' of a {}", f, j.type_name()));
    }
    if (f == "string") return json(v.undefined ? std::string() : py_str(need_defined(v, e.line, "string")));
    if (f == "list") return iterable_items(v, e.line);
    if (f == "items") {
      if (v.undefined) return json::array();
      const json& j = need_defined(v, e.line, "items");
      if (!j.is_object()) error(e.line, "filter 'items' of a non-dict");
      json out = json::array();
      for (auto it = j.begin(); it != j.end(); ++it) out.push_back(json::array({it.key(), it.value()}));
      return out;
    }
    if (f == "dictsort") {
      const json& j = need_defined(v, e.line, "dictsort");
      if (!j.is_object()) error(e.line, "filter 'dictsort' of a non-dict");
      json out = json::array();
      for (auto it = j.begin(); it != j.end(); ++it) out.push_back(json::array({it.key(), it.value()}));
      return out;  // nlohmann objects are already sorted by key
    }
    if (f == "trim" || f == "upper" || f == "lower" || f == "title" || f == "capitalize") {
      std::string s = v.undefined ? std::string() : py_str(need_defined(v, e.line, f.c_str()));
      if (f == "trim") {
        std::optional<std::string> chars;
        if (!a.empty() && a[0].j.is_string()) chars = a[0].j.get<std::string>();
        return json(py_strip(s, chars, true, true));
      }
      return method(Value(json(s)), f, e.line, Value())
          .fn->operator()({}, {});
    }
    if (f == "replace") {
      const std::string s = py_str(need_defined(v, e.line, "replace"));
      if (a.size() < 2 || !a[0].j.is_string() || !a[1].j.is_string()) error(e.line, "replace takes two strings");
      int64_t count = a.size() > 2 && a[2].j.is_number_integer() ? a[2].j.get<int64_t>() : -1;
      return json(replace_all(s, a[0].j.get<std::string>(), a[1].j.get<std::string>(), count, e.line));
    }
    if (f == "join") {
      json items = iterable_items(v, e.line);
      std::string sep = !a.empty() && a[0].j.is_string() ? a[0].j.get<std::string>() : "";
      std::optional<Value> attr = a.size() > 1 ? std::optional<Value>(a[1]) : kwarg("attribute");
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        json x = items[i];
        if (attr) x = get_attr(Value(x), py_str(attr->j), e.line).j;
        if (i) out += sep;
        out += py_str(x);
        if (out.size() > kMaxOutput) error(e.line, "join result too large");
      }
      return json(out);
    }
    if (f == "first" || f == "last") {
      json items = iterable_items(v, e.line);
      if (items.empty()) return Value::undef(f + " of an empty sequence");
      return f == "first" ? items.front() : items.back();
    }
    if (f == "reverse") {
      const json& j = need_defined(v, e.line, "reverse");
      if (j.is_string()) {
        auto cps = code_points(j.get<std::string>());
        std::string out;
        for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
        return json(out);
      }
      json items = iterable_items(v, e.line);
      std::reverse(items.begin(), items.end());
      return items;
    }
    if (f == "unique") {
      json items = iterable_items(v, e.line), out = json::array();
      for (const auto& x : items)
        if (std::find(out.begin(), out.end(), x) == out.end()) out.push_back(x);
      return out;
    }
    if (f == "sort") {
      json items = iterable_items(v, e.line);
      std::optional<Value> attr = kwarg("attribute");
      bool reverse = (kwarg("reverse") && truthy(*kwarg("reverse"))) || (!a.empty() && truthy(a[0]));
      std::vector<json> xs(items.begin(), items.end());
      auto key = [&](const json& x) { return attr ? get_attr(Value(x), py_str(attr->j), e.line).j : x; };
      std::stable_sort(xs.begin(), xs.end(), [&](const json& p, const json& q) {
        json kp = key(p), kq = key(q);
        if (kp.is_number() && kq.is_number()) return kp.get<double>() < kq.get<double>();
        if (kp.is_string() && kq.is_string()) return kp.get<std::string>() < kq.get<std::string>();
        error(e.line, "sort of values that cannot be compared");
      });
      if (reverse) std::reverse(xs.begin(), xs.end());
      return json(xs);
    }
    if (f == "int") {
      const json& j = need_defined(v, e.line, "int");
      if (j.is_number()) return json(static_cast<int64_t>(j.get<double>()));
      if (j.is_string()) {
        try {
          size_t used = 0;
          std::string s(core::strip_unicode_space(j.get<std::string>()));
          int64_t x = std::stoll(s, &used);
          if (used == s.size()) return json(x);
        } catch (const std::exception&) {
        }
      }
      return a.empty() ? json(0) : a[0];
    }
    if (f == "float") {
      const json& j = need_defined(v, e.line, "float");
      if (j.is_number()) return json(j.get<double>());
      if (j.is_string()) {
        try {
          size_t used = 0;
          std::string s(core::strip_unicode_space(j.get<std::string>()));
          double x = std::stod(s, &used);
          if (used == s.size()) return json(x);
        } catch (const std::exception&) {
        }
      }
      return a.empty() ? json(0.0) : a[0];
    }
    if (f == "abs") {
      const json& j = need_defined(v, e.line, "abs");
      if (j.is_number_integer()) return json(std::llabs(j.get<int64_t>()));
      if (j.is_number()) return json(std::fabs(j.get<double>()));
      error(e.line, "abs of a non-number");
    }
    if (f == "round") {
      const json& j = need_defined(v, e.line, "round");
      if (!j.is_number()) error(e.line, "round of a non-number");
      int64_t prec = !a.empty() && a[0].j.is_number_integer() ? a[0].j.get<int64_t>() : 0;
      if (a.size() > 1 || kwarg("method")) error(e.line, "round(method=...) is not supported");
      const double p = std::pow(10.0, static_cast<double>(prec));
      return json(std::nearbyint(j.get<double>() * p) / p);
    }
    if (f == "wordcount") {
      Value words = method(Value(json(py_str(need_defined(v, e.line, "wordcount")))), "split", e.line, Value());
      return json(static_cast<int64_t>((*words.fn)({}, {}).j.size()));
    }
    if (f == "indent") {  // jinja2 do_indent(s, width=4, first=False, blank=False)
      const std::string s = py_str(need_defined(v, e.line, "indent")) + "\n";
      std::optional<Value> w = !a.empty() ? std::optional<Value>(a[0]) : kwarg("width");
      std::string pad = !w ? "    " : w->j.is_string() ? w->j.get<std::string>()
                                     : std::string(static_cast<size_t>(std::clamp<int64_t>(w->j.get<int64_t>(), 0, 1000)), ' ');
      const bool first = (a.size() > 1 && truthy(a[1])) || (kwarg("first") && truthy(*kwarg("first")));
      const bool blank = (a.size() > 2 && truthy(a[2])) || (kwarg("blank") && truthy(*kwarg("blank")));
      std::vector<std::string> lines;  // str.splitlines() on "\n"
      for (size_t start = 0; start < s.size();) {
        size_t nl = s.find('\n', start);
        lines.push_back(s.substr(start, nl - start));
        start = nl + 1;
      }
      std::string out = lines.empty() ? "" : lines[0];
      for (size_t i = 1; i < lines.size(); ++i) out += "\n" + ((blank || !lines[i].empty()) ? pad : "") + lines[i];
      if (first) out = pad + out;
      return json(out);
    }
    if (f == "map") {
      json items = iterable_items(v, e.line), out = json::array();
      std::optional<Value> attr = kwarg("attribute");
      if (attr) {
        std::optional<Value> def = kwarg("default");
        for (const auto& x : items) {
          Value r = get_attr(Value(x), py_str(attr->j), e.line);
          if (r.undefined) {
            if (!def) error(e.line, "map(attribute=...) of an item without it");
            r = *def;
          }
          out.push_back(r.j);
        }
        return out;
      }
      if (a.empty() || !a[0].j.is_string()) error(e.line, "map needs a filter name or attribute=");
      for (const auto& x : items) {
        Expr fe;
        fe.kind = Expr::Filter;
        fe.line = e.line;
        fe.name = a[0].j.get<std::string>();
        auto lit = [](const json& y) {
          auto p = std::make_shared<Expr>();
          p->kind = Expr::Literal;
          p->literal = y;
          return p;
        };
        fe.args.push_back(lit(x));
        for (size_t i = 1; i < a.size(); ++i) fe.args.push_back(lit(a[i].j));
        out.push_back(filter(fe).j);
      }
      return out;
    }
    if (f == "select" || f == "reject" || f == "selectattr" || f == "rejectattr") {
      json items = iterable_items(v, e.line), out = json::array();
      const bool by_attr = f == "selectattr" || f == "rejectattr";
      const bool keep_if = f == "select" || f == "selectattr";
      size_t k = 0;
      std::string attr;
      if (by_attr) {
        if (a.empty() || !a[0].j.is_string()) error(e.line, f + " needs an attribute name");
        attr = a[0].j.get<std::string>();
        k = 1;
      }
      std::optional<std::string> test_name;
      if (a.size() > k) {
        if (!a[k].j.is_string()) error(e.line, f + " needs a test name");
        test_name = a[k].j.get<std::string>();
      }
      Args extra(a.begin() + std::min(a.size(), k + 1), a.end());
      for (const auto& x : items) {
        Value subject = by_attr ? get_attr(Value(x), attr, e.line) : Value(x);
        bool r = test_name ? apply_named_test(*test_name, subject, extra, e.line) : truthy(subject);
        if (r == keep_if) out.push_back(x);
      }
      return out;
    }
    error(e.line, "unsupported filter '" + f + "'");
  }

  const Source& s_;
  std::vector<Scope> scopes_;
  int64_t steps_ = 0;
  int depth_ = 0;
};

}  // namespace

std::string render_chat_template(const std::string& template_source, const nlohmann::json& messages,
                                 bool add_generation_prompt, const nlohmann::json& extra_context,
                                 const std::string& template_name) {
  Source src{template_name};
  core::check_utf8(template_source, Where{template_name, 0, "chat_template"});
  if (!extra_context.is_null() && !extra_context.is_object())
    fail(Where{template_name, 0, "chat_template"}, "extra context must be a JSON object");
  // Jinja normalises newlines to \n and drops one trailing newline (keep_trailing_newline=False).
  std::string source;
  source.reserve(template_source.size());
  for (size_t i = 0; i < template_source.size(); ++i) {
    if (template_source[i] == '\r') {
      source.push_back('\n');
      if (i + 1 < template_source.size() && template_source[i + 1] == '\n') ++i;
    } else {
      source.push_back(template_source[i]);
    }
  }
  if (!source.empty() && source.back() == '\n') source.pop_back();

  Lexer lexer(source, src);
  Parser parser(lexer.run(), src);
  Body body = parser.parse();
  json context = json::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  if (extra_context.is_object())
    for (auto it = extra_context.begin(); it != extra_context.end(); ++it) context[it.key()] = it.value();
  Interpreter interp(src, std::move(context));
  return interp.render(body);
}

}  // namespace loom::text
