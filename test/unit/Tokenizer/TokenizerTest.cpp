//===- TokenizerTest.cpp - Exactness against HuggingFace tokenizers -------===//
//
// test/tokenizer/<family>.expected.tsv holds ids and decoded text written by
// HuggingFace `tokenizers` (test/tokenizer/gen_expected.py); the C++
// tokenizer must match them exactly, encode and decode.
//
//===----------------------------------------------------------------------===//

#include "moec/Tokenizer/Tokenizer.h"

#include "Unicode.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

using namespace moec::tokenizer;

namespace {

struct Case {
  std::string text;
  std::vector<TokenId> ids;
  std::string decoded;
};

std::string fromHex(const std::string &hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    bytes += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return bytes;
}

std::vector<Case> readCases(const std::string &family) {
  std::ifstream file(std::string(MOEC_TOKENIZER_EXPECTED_DIR) + "/" + family +
                     ".expected.tsv");
  EXPECT_TRUE(file) << "missing expected ids for " << family;
  std::vector<Case> cases;
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    std::string text, ids, decoded;
    std::getline(fields, text, '\t');
    std::getline(fields, ids, '\t');
    std::getline(fields, decoded, '\t');
    Case c{
        fromHex(text), {}, decoded == "=" ? fromHex(text) : fromHex(decoded)};
    std::istringstream idStream(ids);
    for (TokenId id; idStream >> id;)
      c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  return cases;
}

// Loading a real tokenizer takes a fraction of a second; load each once.
const Tokenizer &load(const std::string &family) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto &slot = loaded[family];
  if (!slot) {
    std::string error;
    slot = Tokenizer::loadFile(
        std::string(MOEC_TOKENIZER_DATA_DIR) + "/" + family, error);
    if (!slot)
      ADD_FAILURE() << error;
  }
  return *slot;
}

std::string printable(const std::string &text) {
  std::string out;
  for (char c : text)
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out.substr(0, 80);
}

class RealTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(RealTokenizer, EncodeMatchesHuggingFace) {
  const Tokenizer &tokenizer = load(GetParam());
  auto cases = readCases(GetParam());
  EXPECT_GE(cases.size(), 60u);
  for (const Case &c : cases)
    EXPECT_EQ(tokenizer.encode(c.text), c.ids) << printable(c.text);
}

TEST_P(RealTokenizer, DecodeMatchesHuggingFaceAndRoundTrips) {
  const Tokenizer &tokenizer = load(GetParam());
  bool normalizes = GetParam() == "qwen3";
  for (const Case &c : readCases(GetParam())) {
    std::string decoded = tokenizer.decode(c.ids);
    EXPECT_EQ(decoded, c.decoded) << printable(c.text);
    EXPECT_EQ(decoded, normalizes ? unicode::toNfc(c.text) : c.text)
        << printable(c.text);
  }
}

TEST_P(RealTokenizer, StreamingDecodeEqualsDecodeAndNeverSplitsACharacter) {
  const Tokenizer &tokenizer = load(GetParam());
  for (const Case &c : readCases(GetParam())) {
    StreamingDecoder stream(tokenizer);
    std::string joined;
    for (TokenId id : c.ids) {
      std::string piece = stream.push(id);
      EXPECT_EQ(unicode::toValidUtf8(piece), piece) << printable(c.text);
      joined += piece;
    }
    joined += stream.flush();
    EXPECT_EQ(joined, c.decoded) << printable(c.text);
  }
}

TEST_P(RealTokenizer, IllFormedUtf8EncodesByteLevelAndDecodesLossy) {
  const Tokenizer &tokenizer = load(GetParam());
  std::string bytes = "ok \xFF\xE4\xB8 end";
  std::vector<TokenId> ids = tokenizer.encode(bytes);
  std::string raw;
  for (TokenId id : ids)
    raw += tokenizer.tokenBytes(id);
  EXPECT_EQ(raw, bytes);
  EXPECT_EQ(tokenizer.decode(ids), unicode::toValidUtf8(bytes));
}

INSTANTIATE_TEST_SUITE_P(Families, RealTokenizer,
                         ::testing::Values("deepseek_v3", "qwen3", "llama3"));

TEST(Tokenizer, AddSpecialFollowsTokenizerConfig) {
  // DeepSeek's tokenizer_config.json sets add_bos_token.
  std::ifstream json(std::string(MOEC_TOKENIZER_DATA_DIR) +
                     "/deepseek_v3/tokenizer.json");
  std::ifstream config(std::string(MOEC_TOKENIZER_EXPECTED_DIR) +
                       "/deepseek_v3.tokenizer_config.json");
  std::stringstream jsonText, configText;
  jsonText << json.rdbuf();
  configText << config.rdbuf();
  std::string error;
  auto tokenizer = Tokenizer::loadFromJson(jsonText.str(), "deepseek_v3", error,
                                           configText.str());
  ASSERT_TRUE(tokenizer) << error;
  ASSERT_EQ(tokenizer->bosId(), TokenId(0));
  ASSERT_EQ(tokenizer->eosId(), TokenId(1));
  std::vector<TokenId> plain = tokenizer->encode("Hello");
  std::vector<TokenId> special = tokenizer->encode("Hello", true);
  ASSERT_EQ(special.size(), plain.size() + 1);
  EXPECT_EQ(special[0], 0);
  EXPECT_TRUE(tokenizer->isSpecial(0));
  EXPECT_EQ(tokenizer->decode(special, /*skipSpecialTokens=*/true), "Hello");
}

// A tiny byte-level BPE: enough to check error messages and templates.
std::string tinyTokenizer(const std::string &postProcessor = "null") {
  std::string vocab;
  // All 256 byte characters, then "ab".
  std::vector<std::string> byteChars;
  for (int byte = 0; byte < 256; ++byte) {
    bool printable = (byte >= '!' && byte <= '~') ||
                     (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    static int next = 256;
    std::string utf8;
    unicode::appendUtf8(utf8, printable ? char32_t(byte) : char32_t(next++));
    byteChars.push_back(utf8);
  }
  for (int byte = 0; byte < 256; ++byte) {
    std::string escaped = byteChars[byte] == "\""   ? "\\\""
                          : byteChars[byte] == "\\" ? "\\\\"
                                                    : byteChars[byte];
    vocab += "\"" + escaped + "\": " + std::to_string(byte) + ", ";
  }
  vocab += "\"ab\": 256";
  return R"({"added_tokens": [{"id": 257, "content": "<s>", "special": true,
      "normalized": false}], "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                      "use_regex": true},
    "post_processor": )" +
         postProcessor + R"(, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {)" +
         vocab + R"(}, "merges": ["a b"]}})";
}

TEST(Tokenizer, TinyBpeAndTemplateProcessing) {
  std::string error;
  auto tokenizer =
      Tokenizer::loadFromJson(tinyTokenizer(R"({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [257]}}})"),
                              "tiny", error);
  ASSERT_TRUE(tokenizer) << error;
  EXPECT_EQ(tokenizer->encode("abc<s>ab"),
            (std::vector<TokenId>{256, 'c', 257, 256}));
  EXPECT_EQ(tokenizer->encode("ab", true), (std::vector<TokenId>{257, 256}));
  EXPECT_EQ(tokenizer->encode(""), std::vector<TokenId>{});
}

TEST(Tokenizer, BadFilesGiveOneLineErrorsNamingTheField) {
  struct Bad {
    std::string json;
    std::string expectedField;
  };
  std::string good = tinyTokenizer();
  auto replace = [&](const std::string &from, const std::string &to) {
    std::string text = good;
    size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  };
  std::vector<Bad> cases = {
      {"", "invalid JSON"},
      {"[]", "(top level)"},
      {"{}", "model"},
      {replace("\"type\": \"BPE\"", "\"type\": \"Unigram\""), "model.type"},
      {replace("\"merges\": [\"a b\"]", "\"merges\": [\"a zz\"]"),
       "model.merges[0]"},
      {replace("\"merges\": [\"a b\"]", "\"merges\": 3"), "model.merges"},
      {replace("\"type\": \"ByteLevel\", \"add_prefix_space\"",
               "\"type\": \"Whitespace\", \"add_prefix_space\""),
       "pre_tokenizer.type"},
      {replace("\"decoder\": {\"type\": \"ByteLevel\"}",
               "\"decoder\": {\"type\": \"WordPiece\"}"),
       "decoder.type"},
      {replace("\"normalizer\": null", "\"normalizer\": {\"type\": \"NFKD\"}"),
       "normalizer.type"},
      {replace("\"id\": 257", "\"id\": -3"), "added_tokens[0].id"},
      {replace("\"id\": 257", "\"id\": 1e12"), "added_tokens[0].id"},
      {replace("\"ab\": 256", "\"ab\": 99999999999"), "model.vocab"},
      {replace("\"normalizer\": null",
               "\"normalizer\": null, "
               "\"post_processor\": {\"type\": \"TemplateProcessing\", "
               "\"single\": [{\"SpecialToken\": {\"id\": \"x\"}}], "
               "\"special_tokens\": {\"x\": {\"ids\": [900000]}}}"),
       "post_processor"},
  };
  for (const Bad &bad : cases) {
    std::string error;
    EXPECT_FALSE(Tokenizer::loadFromJson(bad.json, "bad.json", error));
    EXPECT_NE(error.find("bad.json"), std::string::npos) << error;
    EXPECT_NE(error.find(bad.expectedField), std::string::npos) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
  // Every truncation of a valid file is an error, never a crash.
  for (size_t length = 0; length < good.size(); length += 97) {
    std::string error;
    EXPECT_FALSE(
        Tokenizer::loadFromJson(good.substr(0, length), "cut.json", error));
  }
  std::string error;
  EXPECT_FALSE(Tokenizer::loadFile("/nonexistent/tokenizer.json", error));
  EXPECT_NE(error.find("/nonexistent/tokenizer.json"), std::string::npos);
}

} // namespace
