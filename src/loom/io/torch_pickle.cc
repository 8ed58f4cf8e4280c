#include "loom/io/torch_pickle.h"

#include <cctype>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>

#include "loom/core/error.h"

namespace loom::io {
namespace {

// A pickle value of the subset. Values live in the parser's arena and point at each other with
// raw pointers, so self-referencing containers (legal pickle) cannot leak or recurse.
struct Value {
  enum class K { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kStorage, kTensor };
  K k = K::kNone;
  int64_t i = 0;                                   // kBool, kInt
  std::string s;                                   // kStr; kGlobal "module.name"
  std::vector<Value*> items;                       // kTuple, kList
  std::vector<std::pair<Value*, Value*>> entries;  // kDict, in insertion order
  PickledTensor t;                                 // kStorage (key/dtype/numel), kTensor
};

const char* kind_name(Value::K k) {
  switch (k) {
    case Value::K::kNone: return "None";
    case Value::K::kBool: return "bool";
    case Value::K::kInt: return "int";
    case Value::K::kFloat: return "float";
    case Value::K::kStr: return "str";
    case Value::K::kTuple: return "tuple";
    case Value::K::kList: return "list";
    case Value::K::kDict: return "dict";
    case Value::K::kGlobal: return "global";
    case Value::K::kStorage: return "storage";
    case Value::K::kTensor: return "tensor";
  }
  return "?";
}

// torch.<T>Storage -> element type (torch/_utils.py, torch/storage.py legacy typed storages).
const std::map<std::string, DType>& storage_types() {
  static const std::map<std::string, DType> m = {
      {"torch.FloatStorage", DType::F32},  {"torch.DoubleStorage", DType::F64},
      {"torch.HalfStorage", DType::F16},   {"torch.BFloat16Storage", DType::BF16},
      {"torch.LongStorage", DType::I64},   {"torch.IntStorage", DType::I32},
      {"torch.ShortStorage", DType::I16},  {"torch.CharStorage", DType::I8},
      {"torch.ByteStorage", DType::U8},    {"torch.BoolStorage", DType::BOOL}};
  return m;
}

constexpr size_t kMaxDims = 64;
constexpr uint64_t kMaxBytes = uint64_t{1} << 50;

class Parser {
 public:
  Parser(std::string_view pkl, const std::string& where) : p_(pkl), where_(where) {}

  PickledStateDict run() {
    while (true) {
      if (pos_ >= p_.size()) err("pickle ends without STOP");
      op_at_ = pos_;
      const auto op = static_cast<unsigned char>(p_[pos_++]);
      switch (op) {
        case 0x80: {  // PROTO
          const unsigned v = u8();
          if (v < 2 || v > 5) err("pickle protocol {} (torch.save writes 2)", v);
          break;
        }
        case 0x95: take(8); break;  // FRAME (protocol 4): framing only
        case 'c': {  // GLOBAL module\nname\n
          std::string module = line(), name = line();
          push_global(module + "." + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value* name = pop();
          Value* module = pop();
          if (module->k != Value::K::kStr || name->k != Value::K::kStr) err("STACK_GLOBAL needs two str");
          push_global(module->s + "." + name->s);
          break;
        }
        case 'q': memo_put(u8()); break;    // BINPUT
        case 'r': memo_put(u32()); break;   // LONG_BINPUT
        case 0x94: memo_put(static_cast<uint32_t>(memo_.size())); break;  // MEMOIZE
        case 'h': memo_get(u8()); break;    // BINGET
        case 'j': memo_get(u32()); break;   // LONG_BINGET
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case ')': push(make(Value::K::kTuple)); break;    // EMPTY_TUPLE
        case 't': {                                         // TUPLE
          Value* v = make(Value::K::kTuple);
          v->items = pop_to_mark();
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = op - 0x84;
          if (stack_.size() < n + floor()) err("stack underflow");
          Value* v = make(Value::K::kTuple);
          v->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          push(v);
          break;
        }
        case '}': push(make(Value::K::kDict)); break;  // EMPTY_DICT
        case ']': push(make(Value::K::kList)); break;  // EMPTY_LIST
        case 's': {                                     // SETITEM
          Value* v = pop();
          Value* k = pop();
          set_item(top(), k, v);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Value*> kv = pop_to_mark();
          if (kv.size() % 2 != 0) err("SETITEMS with an odd number of items");
          Value* d = top();
          for (size_t j = 0; j < kv.size(); j += 2) set_item(d, kv[j], kv[j + 1]);
          break;
        }
        case 'a': {  // APPEND
          Value* v = pop();
          list_of(top())->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Value*> vs = pop_to_mark();
          Value* l = list_of(top());
          l->items.insert(l->items.end(), vs.begin(), vs.end());
          break;
        }
        case 'R': {  // REDUCE
          Value* args = pop();
          Value* fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': {  // BUILD
          Value* state = pop();
          build(top(), state);
          break;
        }
        case 'Q': push(persistent(pop())); break;  // BINPERSID
        case 'J': {                                 // BININT
          uint32_t u = u32();
          int32_t s;
          std::memcpy(&s, &u, 4);
          push_int(s);
          break;
        }
        case 'K': push_int(u8()); break;   // BININT1
        case 'M': push_int(u16()); break;  // BININT2
        case 0x8a: {                       // LONG1 (little-endian two's complement)
          const unsigned n = u8();
          if (n > 8) err("LONG1 of {} bytes does not fit in 64 bits", n);
          std::string_view b = take(n);
          uint64_t u = 0;
          for (unsigned j = 0; j < n; ++j) u |= uint64_t{static_cast<unsigned char>(b[j])} << (8 * j);
          if (n > 0 && n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80)) u |= ~uint64_t{0} << (8 * n);
          int64_t s;
          std::memcpy(&s, &u, 8);
          push_int(s);
          break;
        }
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
          Value* v = make(Value::K::kBool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'N': push(make(Value::K::kNone)); break;  // NONE
        case 'G': take(8); push(make(Value::K::kFloat)); break;  // BINFLOAT (value unused)
        case 'X': push_str(take(u32())); break;                  // BINUNICODE
        case 0x8c: push_str(take(u8())); break;                  // SHORT_BINUNICODE
        case '.': return finish();                               // STOP
        default:
          err("opcode 0x{:02x} is not in the torch.save subset (state dict of tensors)", op);
      }
    }
  }

 private:
  template <typename... Args>
  [[noreturn]] void err(fmt::format_string<Args...> f, Args&&... args) const {
    fail(Where{where_, 0, "data.pkl"}, "byte {}: {}", op_at_, fmt::format(f, std::forward<Args>(args)...));
  }

  std::string_view take(uint64_t n) {
    if (n > p_.size() - pos_) err("truncated pickle (needs {} more bytes, {} left)", n, p_.size() - pos_);
    std::string_view v = p_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  unsigned u8() { return static_cast<unsigned char>(take(1)[0]); }
  unsigned u16() {
    std::string_view b = take(2);
    return static_cast<unsigned char>(b[0]) | (static_cast<unsigned>(static_cast<unsigned char>(b[1])) << 8);
  }
  uint32_t u32() {
    std::string_view b = take(4);
    uint32_t u = 0;
    for (int j = 0; j < 4; ++j) u |= uint32_t{static_cast<unsigned char>(b[j])} << (8 * j);
    return u;
  }
  std::string line() {
    const size_t nl = p_.find('\n', pos_);
    if (nl == std::string_view::npos || nl - pos_ > 256) err("GLOBAL without a short newline-terminated name");
    std::string s(p_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return s;
  }

  Value* make(Value::K k) {
    arena_.emplace_back();
    arena_.back().k = k;
    return &arena_.back();
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Value* v) { stack_.push_back(v); }
  Value* pop() {
    if (stack_.size() <= floor()) err("stack underflow");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    if (stack_.size() <= floor()) err("stack underflow");
    return stack_.back();
  }
  std::vector<Value*> pop_to_mark() {
    if (marks_.empty()) err("no MARK to pop to");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  void push_int(int64_t i) {
    Value* v = make(Value::K::kInt);
    v->i = i;
    push(v);
  }
  void push_str(std::string_view s) {
    Value* v = make(Value::K::kStr);
    v->s = std::string(s);
    push(v);
  }
  void push_global(const std::string& name) {
    if (name != "collections.OrderedDict" && name != "torch._utils._rebuild_tensor_v2" &&
        name != "torch._utils._rebuild_parameter" && name != "torch.jit._pickle.restore_type_tag" &&
        !storage_types().count(name))
      err("global '{}' is not allowed (a torch.save state dict only needs collections.OrderedDict, "
          "torch._utils._rebuild_tensor_v2 and torch.<T>Storage)", name);
    Value* v = make(Value::K::kGlobal);
    v->s = name;
    push(v);
  }
  void memo_put(uint32_t idx) { memo_[idx] = top(); }
  void memo_get(uint32_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) err("memo entry {} was never stored", idx);
    push(it->second);
  }
  void set_item(Value* d, Value* k, Value* v) {
    if (d->k != Value::K::kDict) err("SETITEM on a {}, not a dict", kind_name(d->k));
    d->entries.emplace_back(k, v);
  }
  Value* list_of(Value* l) {
    if (l->k != Value::K::kList) err("APPEND on a {}, not a list", kind_name(l->k));
    return l;
  }

  int64_t int_of(const Value* v, const char* what) const {
    if (v->k != Value::K::kInt) err("{} must be an int, got {}", what, kind_name(v->k));
    return v->i;
  }
  std::vector<int64_t> ints_of(const Value* v, const char* what) const {
    if (v->k != Value::K::kTuple) err("{} must be a tuple of ints, got {}", what, kind_name(v->k));
    if (v->items.size() > kMaxDims) err("{} has {} dims (at most {})", what, v->items.size(), kMaxDims);
    std::vector<int64_t> out;
    for (const Value* x : v->items) out.push_back(int_of(x, what));
    return out;
  }

  Value* reduce(Value* fn, Value* args) {
    if (fn->k != Value::K::kGlobal) err("REDUCE of a {}, not a callable global", kind_name(fn->k));
    if (args->k != Value::K::kTuple) err("REDUCE arguments are a {}, not a tuple", kind_name(args->k));
    const auto& a = args->items;
    if (fn->s == "collections.OrderedDict") {
      if (!a.empty()) err("collections.OrderedDict called with {} arguments", a.size());
      return make(Value::K::kDict);
    }
    if (fn->s == "torch.jit._pickle.restore_type_tag") {  // libtorch's pickler: (value, "Dict[str, Tensor]")
      if (a.size() != 2 || a[1]->k != Value::K::kStr) err("restore_type_tag expects (value, type string)");
      return a[0];
    }
    if (fn->s == "torch._utils._rebuild_parameter") {  // (data, requires_grad, backward_hooks)
      if (a.size() != 3 || a[0]->k != Value::K::kTensor) err("_rebuild_parameter expects (tensor, bool, hooks)");
      return a[0];
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (a.size() != 6 && a.size() != 7) err("_rebuild_tensor_v2 called with {} arguments (6 or 7)", a.size());
      if (a[0]->k != Value::K::kStorage) err("_rebuild_tensor_v2: first argument is a {}, not a storage", kind_name(a[0]->k));
      if (a[4]->k != Value::K::kBool) err("_rebuild_tensor_v2: requires_grad is a {}, not a bool", kind_name(a[4]->k));
      if (a[5]->k != Value::K::kDict || !a[5]->entries.empty())
        err("_rebuild_tensor_v2: backward hooks must be an empty OrderedDict");
      Value* v = make(Value::K::kTensor);
      v->t = a[0]->t;
      v->t.offset = int_of(a[1], "storage_offset");
      v->t.sizes = ints_of(a[2], "size");
      v->t.strides = ints_of(a[3], "stride");
      check_view(v->t);
      return v;
    }
    err("REDUCE of '{}' is not allowed", fn->s);
  }

  void check_view(const PickledTensor& t) const {
    if (t.sizes.size() != t.strides.size())
      err("tensor has {} sizes but {} strides", t.sizes.size(), t.strides.size());
    if (t.offset < 0) err("negative storage_offset {}", t.offset);
    bool empty = false;
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      if (t.sizes[d] < 0 || t.strides[d] < 0) err("negative size or stride in dim {}", d);
      empty = empty || t.sizes[d] == 0;
    }
    if (empty) {
      if (static_cast<uint64_t>(t.offset) > t.storage_numel) err("storage_offset {} past the storage's {} elements", t.offset, t.storage_numel);
      return;
    }
    uint64_t last = static_cast<uint64_t>(t.offset);  // index of the view's last element
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      uint64_t step = 0;
      if (__builtin_mul_overflow(static_cast<uint64_t>(t.sizes[d] - 1), static_cast<uint64_t>(t.strides[d]), &step) ||
          __builtin_add_overflow(last, step, &last))
        err("tensor view extent overflows");
    }
    if (last >= t.storage_numel)
      err("tensor view (offset {}, sizes [{}], strides [{}]) reaches element {} of a storage of {}", t.offset,
          fmt::join(t.sizes, ", "), fmt::join(t.strides, ", "), last, t.storage_numel);
  }

  Value* persistent(Value* pid) {
    // ('storage', torch.<T>Storage, key, location, numel)
    if (pid->k != Value::K::kTuple || pid->items.size() != 5 || pid->items[0]->k != Value::K::kStr ||
        pid->items[0]->s != "storage")
      err("persistent id is not ('storage', type, key, location, numel)");
    const auto& a = pid->items;
    if (a[1]->k != Value::K::kGlobal || !storage_types().count(a[1]->s)) err("persistent id: storage type is not a torch.<T>Storage");
    if (a[2]->k != Value::K::kStr || a[2]->s.empty() || a[2]->s.size() > 64) err("persistent id: bad storage key");
    for (char c : a[2]->s)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') err("persistent id: storage key '{}' is not alphanumeric", a[2]->s);
    if (a[3]->k != Value::K::kStr) err("persistent id: location is not a str");
    const int64_t numel = int_of(a[4], "storage numel");
    const DType dt = storage_types().at(a[1]->s);
    if (numel < 0 || static_cast<uint64_t>(numel) > kMaxBytes / dtype_size(dt)) err("storage numel {} out of range", numel);
    auto [it, fresh] = storages_.emplace(a[2]->s, std::make_pair(dt, static_cast<uint64_t>(numel)));
    if (!fresh && (it->second.first != dt || it->second.second != static_cast<uint64_t>(numel)))
      err("storage '{}' appears with two different types or sizes", a[2]->s);
    Value* v = make(Value::K::kStorage);
    v->t.storage_key = a[2]->s;
    v->t.dtype = dt;
    v->t.storage_numel = static_cast<uint64_t>(numel);
    return v;
  }

  void build(Value* obj, Value* state) {
    // OrderedDict.__reduce__ state: {'_metadata': OrderedDict(...)} (nn.Module.state_dict()).
    if (obj->k != Value::K::kDict) err("BUILD on a {} (only a state dict's _metadata is expected)", kind_name(obj->k));
    if (state->k != Value::K::kDict) err("BUILD state is a {}, not a dict", kind_name(state->k));
    for (const auto& [k, v] : state->entries)
      if (k->k != Value::K::kStr || k->s != "_metadata")
        err("BUILD state sets '{}', expected only _metadata", k->k == Value::K::kStr ? k->s : kind_name(k->k));
  }

  PickledStateDict finish() {
    Value* root = pop();
    if (!stack_.empty() || !marks_.empty()) err("STOP with {} values left on the stack", stack_.size());
    if (pos_ != p_.size()) err("{} bytes after STOP", p_.size() - pos_);
    if (root->k != Value::K::kDict) err("the pickle is a {}, not a state dict (name -> tensor)", kind_name(root->k));
    PickledStateDict out;
    std::set<std::string> seen;
    for (const auto& [k, v] : root->entries) {
      if (k->k != Value::K::kStr) fail(Where{where_, 0, "data.pkl"}, "state dict key is a {}, not a str", kind_name(k->k));
      if (v->k != Value::K::kTensor)
        fail(Where{where_, 0, k->s}, "state dict value is a {}, not a tensor (nested dicts are not a state dict)",
             kind_name(v->k));
      if (!seen.insert(k->s).second) fail(Where{where_, 0, k->s}, "state dict key appears twice");
      out.tensors.push_back(v->t);
      out.tensors.back().name = k->s;
    }
    return out;
  }

  std::string_view p_;
  const std::string& where_;
  size_t pos_ = 0, op_at_ = 0;
  std::deque<Value> arena_;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, Value*> memo_;
  std::map<std::string, std::pair<DType, uint64_t>> storages_;
};

}  // namespace

PickledStateDict parse_torch_pickle(std::string_view pkl, const std::string& where) {
  return Parser(pkl, where).run();
}

}  // namespace loom::io
