#include "loom/io/safetensors.h"
#include "support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "loom/core/error.h"
#include "loom/io/checkpoint.h"
#include "support/support.h"

namespace loom::io {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh/model.safetensors";

using loom_test::slurp;
using loom_test::TempDir;

// A safetensors file: 8-byte little-endian header length, header text, data bytes.
std::string make(const std::string& header, const std::string& data = "",
                 std::optional<uint64_t> claimed = std::nullopt) {
  uint64_t n = claimed.value_or(header.size());
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// The message of the loom::Error that from_bytes(bytes, "bad.safetensors") throws ("" if none).
std::string error_of(const std::string& bytes) {
  return loom_test::error_of([&] { SafetensorsFile::from_bytes(bytes, "bad.safetensors"); });
}

TEST(Safetensors, DTypeSizesAndNames) {
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::I32), 4u);
  EXPECT_EQ(dtype_size(DType::BOOL), 1u);
  EXPECT_EQ(dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(dtype_name(DType::U8), "U8");
}

TEST(Safetensors, ReadsMarianFixture) {
  SafetensorsFile f(kMarian);
  EXPECT_EQ(f.path(), kMarian);
  ASSERT_EQ(f.tensors().size(), 86u);
  EXPECT_EQ(f.metadata(), nlohmann::json({{"format", "pt"}}));
  for (size_t i = 1; i < f.tensors().size(); ++i)
    EXPECT_LT(f.tensors()[i - 1].name, f.tensors()[i].name);

  const TensorInfo* w = f.find("model.shared.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::F32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{734, 32}));
  EXPECT_EQ(w->offset, 173944u);
  EXPECT_EQ(w->nbytes, 734u * 32 * 4);
  EXPECT_EQ(f.data(*w).size(), w->nbytes);
  EXPECT_EQ(f.find("lm_head.weight"), nullptr);  // tied: stored once
  EXPECT_EQ(f.find(""), nullptr);

  // The ranges tile the data section (file size - 8 - header length 9184).
  uint64_t total = 0;
  for (const auto& t : f.tensors()) total += t.nbytes;
  EXPECT_EQ(total, 277088u - 8 - 9184);

  // Values decoded independently with Python's struct module from the same file.
  torch::Tensor t = to_tensor(f, *w);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{734, 32}));
  EXPECT_EQ(t.dtype(), torch::kFloat32);
  EXPECT_FLOAT_EQ(t[0][0].item<float>(), -0.46597015857696533f);
  EXPECT_FLOAT_EQ(t[0][1].item<float>(), -0.39511340856552124f);
  EXPECT_FLOAT_EQ(t[733][31].item<float>(), -0.733354926109314f);
  EXPECT_NEAR(t.to(torch::kFloat64).sum().item<double>(), -69.62053157986657, 1e-9);
  torch::Tensor bias = to_tensor(f, *f.find("final_logits_bias"), torch::kFloat64);
  EXPECT_EQ(bias.sizes(), (std::vector<int64_t>{1, 734}));
  EXPECT_NEAR(bias.sum().item<double>(), -3.6670862338542065, 1e-12);
  EXPECT_DOUBLE_EQ(bias[0][733].item<double>(), static_cast<double>(0.09218182414770126f));
}

TEST(Safetensors, FromBytesMatchesFileAndSurvivesMoves) {
  SafetensorsFile a = SafetensorsFile::from_bytes(slurp(kMarian), "mem");
  SafetensorsFile b(kMarian);
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    EXPECT_EQ(a.tensors()[i].name, b.tensors()[i].name);
    EXPECT_EQ(a.data(a.tensors()[i]), b.data(b.tensors()[i]));
  }
  std::string expect(b.data(*b.find("model.shared.weight")));
  SafetensorsFile moved(std::move(b));
  SafetensorsFile assigned = SafetensorsFile::from_bytes(make("{}"), "empty");
  assigned = std::move(moved);
  EXPECT_EQ(assigned.path(), kMarian);
  ASSERT_NE(assigned.find("model.shared.weight"), nullptr);
  EXPECT_EQ(assigned.data(*assigned.find("model.shared.weight")), expect);
  // A TensorInfo of another file is refused rather than read out of bounds.
  TensorInfo foreign{"x", DType::F32, {1}, 0, 4};
  EXPECT_THROW(assigned.data(foreign), Error);
}

TEST(Safetensors, EmptyHeaderAndZeroSizedTensors) {
  SafetensorsFile e = SafetensorsFile::from_bytes(make("{}"), "e");
  EXPECT_TRUE(e.tensors().empty());
  EXPECT_TRUE(e.metadata().is_object() && e.metadata().empty());
  // Padding with spaces after the JSON is allowed (the reference writer pads to 8 bytes).
  SafetensorsFile z = SafetensorsFile::from_bytes(
      make(R"({"z":{"dtype":"F16","shape":[0,5],"data_offsets":[0,0]},)"
           R"("s":{"dtype":"I16","shape":[],"data_offsets":[0,2]}}   )",
           std::string("\x07\x00", 2)),
      "z");
  EXPECT_EQ(z.find("z")->nbytes, 0u);
  EXPECT_EQ(to_tensor(z, *z.find("z")).sizes(), (std::vector<int64_t>{0, 5}));
  torch::Tensor s = to_tensor(z, *z.find("s"), torch::kInt64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<int64_t>(), 7);
}

TEST(Safetensors, RejectsTruncatedAndTinyFiles) {
  EXPECT_THAT(error_of(""), AllOf(HasSubstr("bad.safetensors"), HasSubstr("0 bytes")));
  EXPECT_THAT(error_of("x"), AllOf(HasSubstr("bad.safetensors"), HasSubstr("1 bytes")));
  EXPECT_THAT(error_of(std::string(7, '\0')), HasSubstr("7 bytes"));
  std::string full = slurp(kMarian);
  // Cut inside the header: the length field promises more than there is.
  EXPECT_THAT(error_of(full.substr(0, 100)), HasSubstr("header length 9184"));
  // Cut inside the data: the last tensors run past the end.
  EXPECT_THAT(error_of(full.substr(0, full.size() - 10)),
              AllOf(HasSubstr("bad.safetensors"), HasSubstr("run past the data section")));
  // Extra bytes after the last tensor.
  EXPECT_THAT(error_of(full + "junk"), HasSubstr("cover"));
}

TEST(Safetensors, RejectsTruncatedFileOnDisk) {
  TempDir dir;
  std::string full = slurp(kMarian);
  const std::string path = dir / "cut.safetensors";
  std::ofstream(path, std::ios::binary) << full.substr(0, full.size() / 2);
  try {
    SafetensorsFile f(path);
    FAIL() << "opened a truncated file";
  } catch (const Error& e) {
    EXPECT_EQ(e.where().file, path);
    EXPECT_FALSE(e.where().field.empty());  // names the first tensor that does not fit
    EXPECT_THAT(e.what(), HasSubstr("run past the data section"));
  }
  EXPECT_THROW(SafetensorsFile(dir / "missing.safetensors"), Error);
  EXPECT_THROW(SafetensorsFile(dir.path().string()), Error);  // a directory
  std::ofstream(dir / "empty.safetensors", std::ios::binary);
  EXPECT_THAT([&] { try { SafetensorsFile g(dir / "empty.safetensors"); } catch (const Error& e) { return std::string(e.what()); } return std::string(); }(),
              AllOf(HasSubstr("empty.safetensors"), HasSubstr("0 bytes")));
}

TEST(Safetensors, RejectsLyingHeaderLength) {
  EXPECT_THAT(error_of(make("{}", "", 1000)), HasSubstr("header length 1000"));
  EXPECT_THAT(error_of(make("{}", "", uint64_t{1} << 40)), HasSubstr("limit"));
  EXPECT_THAT(error_of(make("{}", "", ~uint64_t{1})), HasSubstr("limit"));  // 2^64 - 2
  EXPECT_THAT(error_of(make("{", "", 1)), HasSubstr("too short"));
  // Shorter than the real JSON: the parser sees a cut-off object.
  EXPECT_THAT(error_of(make(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                            "abcd", 20)),
              HasSubstr("invalid JSON"));
}

TEST(Safetensors, RejectsBadJson) {
  EXPECT_THAT(error_of(make("not json")), HasSubstr("invalid JSON"));
  EXPECT_THAT(error_of(make("[1,2]   ")), HasSubstr("expected a JSON object"));
  EXPECT_THAT(error_of(make("{} {}")), HasSubstr("invalid JSON"));
  EXPECT_THAT(error_of(make(std::string("{\"\xff\":1}"))), HasSubstr("invalid JSON"));
}

TEST(Safetensors, RejectsBadEntries) {
  auto entry = [](const std::string& body, const std::string& data = std::string(4, '\0')) {
    return error_of(make(R"({"w": )" + body + "}", data));
  };
  const std::string ok = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  EXPECT_EQ(entry(ok), "");
  EXPECT_THAT(entry("[1]"), AllOf(HasSubstr("bad.safetensors"), HasSubstr("'w'"),
                                  HasSubstr("must be an object")));
  EXPECT_THAT(entry("3"), HasSubstr("must be an object"));
  EXPECT_THAT(entry(R"({"shape":[1],"data_offsets":[0,4]})"), HasSubstr("\"dtype\""));
  EXPECT_THAT(entry(R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})"), HasSubstr("\"dtype\""));
  EXPECT_THAT(entry(R"({"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]})"),
              AllOf(HasSubstr("'w'"), HasSubstr("unsupported dtype \"F8_E4M3\"")));
  EXPECT_THAT(entry(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})"),
              HasSubstr("unsupported dtype"));
  EXPECT_THAT(entry(R"({"dtype":"F32","data_offsets":[0,4]})"), HasSubstr("\"shape\""));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":4,"data_offsets":[0,4]})"), HasSubstr("\"shape\""));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"),
              AllOf(HasSubstr("'w'"), HasSubstr("non-negative integer")));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"),
              HasSubstr("non-negative integer"));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":["1"],"data_offsets":[0,4]})"),
              HasSubstr("non-negative integer"));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]})"),
              HasSubstr("too large"));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})"),
              HasSubstr("overflows"));
  EXPECT_THAT(entry(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]})"),
              HasSubstr("overflows"));
  // A zero dim makes the product 0 even after a huge one: no false overflow.
  EXPECT_EQ(entry(R"({"dtype":"F32","shape":[4294967296,0],"data_offsets":[0,0]})", ""), "");
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[1]})"), HasSubstr("data_offsets"));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), HasSubstr("data_offsets"));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})"),
              HasSubstr("data_offsets"));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"),
              HasSubstr("data_offsets"));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})"),
              HasSubstr("end before begin"));
  // Header lies about the size: shape says 2 floats, offsets say 4 bytes.
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"),
              AllOf(HasSubstr("'w'"), HasSubstr("span 4 bytes"), HasSubstr("needs 8")));
  // Offsets beyond the data section.
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"),
              AllOf(HasSubstr("'w'"), HasSubstr("run past the data section (4 bytes)")));
  EXPECT_THAT(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]})"),
              HasSubstr("data_offsets"));
}

TEST(Safetensors, RejectsOverlapsGapsAndDuplicates) {
  const std::string data(8, '\0');
  EXPECT_THAT(error_of(make(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"I16","shape":[2],"data_offsets":[2,6]}})",
                            data)),
              AllOf(HasSubstr("'b'"), HasSubstr("overlap tensor 'a' [0, 4]")));
  EXPECT_THAT(error_of(make(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                            data)),
              HasSubstr("overlap"));
  EXPECT_THAT(error_of(make(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            data)),
              AllOf(HasSubstr("'b'"), HasSubstr("gap")));
  EXPECT_THAT(error_of(make(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data)),
              HasSubstr("data section has 8 bytes but the tensors cover 4"));
  EXPECT_THAT(error_of(make(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            data)),
              AllOf(HasSubstr("'a'"), HasSubstr("duplicate key")));
  EXPECT_THAT(error_of(make(R"({"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})",
                            data.substr(0, 4))),
              AllOf(HasSubstr("'dtype'"), HasSubstr("duplicate key")));
}

TEST(Safetensors, ValidatesMetadata) {
  EXPECT_EQ(error_of(make(R"({"__metadata__":{"format":"pt","k":""}})")), "");
  EXPECT_EQ(SafetensorsFile::from_bytes(make(R"({"__metadata__":{"format":"pt"}})"), "m")
                .metadata()["format"],
            "pt");
  EXPECT_THAT(error_of(make(R"({"__metadata__":[1]})")),
              AllOf(HasSubstr("'__metadata__'"), HasSubstr("object of strings")));
  EXPECT_THAT(error_of(make(R"({"__metadata__":{"n":1}})")), HasSubstr("must be a string"));
}

TEST(SafetensorsWriter, RoundTripsDTypesShapesAndMetadata) {
  TempDir dir;
  const std::string path = dir / "out.safetensors";
  torch::manual_seed(3);
  torch::Tensor f32 = torch::randn({3, 5});
  torch::Tensor f16 = torch::randn({4}).to(torch::kHalf);
  torch::Tensor bf16 = torch::randn({2, 2}).to(torch::kBFloat16);
  torch::Tensor f64 = torch::randn({1, 2, 3}, torch::kFloat64);
  torch::Tensor i64 = torch::arange(-3, 3, torch::kInt64);
  torch::Tensor boolean = torch::tensor({true, false, true});
  torch::Tensor scalar = torch::tensor(2.5f);
  torch::Tensor empty = torch::zeros({0, 7});
  torch::Tensor transposed = torch::arange(6, torch::kFloat32).reshape({2, 3}).t();
  write_safetensors(path,
                    {{"f32", f32}, {"f16", f16}, {"bf16", bf16}, {"f64", f64}, {"i64", i64},
                     {"bool", boolean}, {"scalar", scalar}, {"empty", empty},
                     {"transposed", transposed}},
                    {{"format", "pt"}, {"by", "loom"}});
  EXPECT_FALSE(fs::exists(path + ".tmp." + std::to_string(::getpid())));

  std::string bytes = slurp(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);

  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata(), nlohmann::json({{"format", "pt"}, {"by", "loom"}}));
  ASSERT_EQ(f.tensors().size(), 9u);
  // Written in the given order, back to back.
  EXPECT_EQ(f.find("f32")->offset, 0u);
  EXPECT_EQ(f.find("f16")->offset, 60u);
  EXPECT_EQ(f.find("bf16")->offset, 68u);
  EXPECT_EQ(f.find("bf16")->dtype, DType::BF16);
  EXPECT_EQ(f.find("bool")->dtype, DType::BOOL);
  EXPECT_EQ(f.find("scalar")->shape, std::vector<int64_t>{});

  auto back = [&](const char* name, torch::ScalarType t) { return to_tensor(f, *f.find(name), t); };
  EXPECT_TRUE(torch::equal(back("f32", torch::kFloat32), f32));
  EXPECT_TRUE(torch::equal(back("f16", torch::kHalf), f16));
  EXPECT_TRUE(torch::equal(back("bf16", torch::kBFloat16), bf16));
  EXPECT_TRUE(torch::equal(back("bf16", torch::kFloat32), bf16.to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(back("f64", torch::kFloat64), f64));
  EXPECT_TRUE(torch::equal(back("i64", torch::kInt64), i64));
  EXPECT_TRUE(torch::equal(back("bool", torch::kBool), boolean));
  EXPECT_EQ(back("scalar", torch::kFloat32).item<float>(), 2.5f);
  EXPECT_EQ(back("empty", torch::kFloat32).sizes(), (std::vector<int64_t>{0, 7}));
  torch::Tensor tr = back("transposed", torch::kFloat32);
  EXPECT_TRUE(torch::equal(tr, transposed));
  EXPECT_EQ(tr[0][1].item<float>(), 3.0f);
}

TEST(SafetensorsWriter, RoundTripsMarianFixtureAndOverwrites) {
  TempDir dir;
  SafetensorsFile src(kMarian);
  std::vector<std::pair<std::string, torch::Tensor>> all;
  for (const auto& t : src.tensors()) all.emplace_back(t.name, to_tensor(src, t));
  const std::string path = dir / "copy.safetensors";
  std::ofstream(path) << "old contents";
  write_safetensors(path, all, src.metadata());
  SafetensorsFile copy(path);
  ASSERT_EQ(copy.tensors().size(), 86u);
  for (const auto& t : src.tensors()) {
    const TensorInfo* c = copy.find(t.name);
    ASSERT_NE(c, nullptr) << t.name;
    EXPECT_EQ(c->shape, t.shape);
    EXPECT_EQ(copy.data(*c), src.data(t)) << t.name;
  }
}

TEST(SafetensorsWriter, RejectsBadInput) {
  TempDir dir;
  const std::string path = dir / "x.safetensors";
  torch::Tensor t = torch::ones({2});
  EXPECT_THAT([&] { try { write_safetensors(path, {{"a", t}, {"a", t}}); } catch (const Error& e) { return std::string(e.what()); } return std::string(); }(),
              AllOf(HasSubstr("'a'"), HasSubstr("duplicate")));
  EXPECT_THROW(write_safetensors(path, {{"", t}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"__metadata__", t}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"c", torch::ones({2}, torch::kComplexFloat)}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"a", t}}, {{"n", 1}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"a", t}}, nlohmann::json::array()), Error);
  EXPECT_THROW(write_safetensors(dir / "no/such/dir/x.safetensors", {{"a", t}}), Error);
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace loom::io
