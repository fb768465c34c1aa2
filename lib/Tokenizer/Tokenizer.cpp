//===- Tokenizer.cpp - HuggingFace byte-level BPE tokenizer ---------------===//
//
// The encode pipeline follows `tokenizers`: split out added tokens that are
// matched on the raw text, normalize the rest, split out the added tokens
// matched on normalized text, run the pre-tokenizer steps over each
// remaining piece, then BPE each piece by merge rank.
//
//===----------------------------------------------------------------------===//

#include "moec/Tokenizer/Tokenizer.h"

#include "Json.h"
#include "Regex.h"
#include "Unicode.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

namespace moec::tokenizer {

namespace {

/// GPT-2's byte-to-character map: printable Latin-1 bytes stand for
/// themselves, the rest map to U+0100 onwards, so every byte is a visible
/// character in vocab strings.
std::array<char32_t, 256> makeByteToChar() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int byte = 0; byte < 256; ++byte) {
    bool printable = (byte >= '!' && byte <= '~') ||
                     (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    table[byte] = printable ? char32_t(byte) : next++;
  }
  return table;
}

const std::array<char32_t, 256> kByteToChar = makeByteToChar();

/// The inverse map: character (< U+0144) to byte, -1 when none.
const std::array<int, 0x144> kCharToByte = [] {
  std::array<int, 0x144> table;
  table.fill(-1);
  for (int byte = 0; byte < 256; ++byte)
    table[kByteToChar[byte]] = byte;
  return table;
}();

/// The bytes a vocab string stands for, or nullopt when a character is
/// outside the byte-level alphabet.
std::optional<std::string> byteLevelToBytes(std::string_view token) {
  std::vector<char32_t> codePoints;
  std::vector<uint32_t> offsets;
  unicode::decodeUtf8(token, codePoints, offsets);
  std::string bytes;
  bytes.reserve(codePoints.size());
  for (char32_t cp : codePoints) {
    if (cp >= kCharToByte.size() || kCharToByte[cp] < 0)
      return std::nullopt;
    bytes += char(kCharToByte[cp]);
  }
  return bytes;
}

enum class SplitBehavior {
  Removed,
  Isolated,
  MergedWithPrevious,
  MergedWithNext,
  Contiguous
};

struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel, Digits } kind;
  std::unique_ptr<Regex> regex; // Split, and ByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool addPrefixSpace = false;   // ByteLevel
  bool individualDigits = false; // Digits
};

struct AddedToken {
  std::string content;
  TokenId id;
};

/// Added tokens matched leftmost-longest, bucketed by first byte.
struct AddedTokenMatcher {
  std::vector<AddedToken> tokens;
  std::array<std::vector<int>, 256> byFirstByte;

  void finish() {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (!tokens[i].content.empty())
        byFirstByte[uint8_t(tokens[i].content[0])].push_back(i);
    for (auto &bucket : byFirstByte)
      std::stable_sort(bucket.begin(), bucket.end(), [&](int a, int b) {
        return tokens[a].content.size() > tokens[b].content.size();
      });
  }
  /// The longest token starting at `pos`, or nullptr.
  const AddedToken *matchAt(std::string_view text, size_t pos) const {
    for (int index : byFirstByte[uint8_t(text[pos])]) {
      const std::string &content = tokens[index].content;
      if (text.compare(pos, content.size(), content) == 0)
        return &tokens[index];
    }
    return nullptr;
  }
};

/// A piece of the input: either an already-decided token or text to split.
struct Piece {
  std::string text;
  TokenId token = -1;
};

/// Ids above this are rejected: a hostile file must not make us allocate
/// gigabytes (real vocabularies are below 300k).
constexpr double kMaxTokenId = 1 << 24;

std::string_view kindName(const json::Value &value) {
  const json::Value *type = value.get("type");
  return type && type->isString() ? std::string_view(type->string) : "";
}

} // namespace

struct Tokenizer::Impl {
  std::vector<std::string> tokenStrings; // by id, as in tokenizer.json
  std::vector<std::string> tokenBytes;   // by id, what decode emits
  std::vector<bool> special;
  std::unordered_map<std::string, TokenId> stringToId;
  std::unordered_map<std::string, TokenId> modelBytesToId; // model vocab only
  std::array<TokenId, 256> byteToId;
  // (left << 32 | right) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<uint32_t, TokenId>> merges;
  bool ignoreMerges = false;
  bool normalizeNfc = false;
  std::vector<PreTokenizerStep> preTokenizer;
  AddedTokenMatcher rawAddedTokens, normalizedAddedTokens;
  bool hasTemplate = false;
  std::vector<TokenId> templatePrefix, templateSuffix;
  bool addBos = false, addEos = false;
  std::optional<TokenId> bos, eos;

  mutable std::mutex cacheMutex;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache;

  void splitAddedTokens(const AddedTokenMatcher &matcher,
                        std::vector<Piece> &pieces) const;
  void preTokenize(const PreTokenizerStep &step,
                   std::vector<std::string> &pieces) const;
  void bytePairEncode(const std::string &piece,
                      std::vector<TokenId> &out) const;
};

void Tokenizer::Impl::splitAddedTokens(const AddedTokenMatcher &matcher,
                                       std::vector<Piece> &pieces) const {
  if (matcher.tokens.empty())
    return;
  std::vector<Piece> result;
  for (Piece &piece : pieces) {
    if (piece.token >= 0) {
      result.push_back(std::move(piece));
      continue;
    }
    const std::string &text = piece.text;
    size_t textStart = 0;
    for (size_t pos = 0; pos < text.size();) {
      const AddedToken *token = matcher.matchAt(text, pos);
      if (!token) {
        ++pos;
        continue;
      }
      if (pos > textStart)
        result.push_back({text.substr(textStart, pos - textStart)});
      result.push_back({"", token->id});
      pos += token->content.size();
      textStart = pos;
    }
    if (textStart < text.size())
      result.push_back({text.substr(textStart)});
  }
  pieces = std::move(result);
}

void Tokenizer::Impl::preTokenize(const PreTokenizerStep &step,
                                  std::vector<std::string> &pieces) const {
  std::vector<std::string> result;
  std::vector<char32_t> codePoints;
  std::vector<uint32_t> offsets;
  for (std::string &piece : pieces) {
    if (step.kind == PreTokenizerStep::Kind::ByteLevel) {
      if (step.addPrefixSpace && piece.rfind(' ', 0) != 0)
        piece.insert(piece.begin(), ' ');
      if (!step.regex) {
        result.push_back(std::move(piece));
        continue;
      }
    }
    unicode::decodeUtf8(piece, codePoints, offsets);
    // [begin, end) code point ranges covering the piece, with match flags.
    std::vector<std::tuple<size_t, size_t, bool>> ranges;
    auto addMatch = [&](size_t begin, size_t end) {
      size_t last = ranges.empty() ? 0 : std::get<1>(ranges.back());
      if (begin > last)
        ranges.push_back({last, begin, false});
      ranges.push_back({begin, end, true});
    };
    if (step.kind == PreTokenizerStep::Kind::Digits) {
      for (size_t i = 0; i < codePoints.size(); ++i)
        if (unicode::category(codePoints[i]) & unicode::Number)
          addMatch(i, i + 1);
    } else {
      for (auto [begin, end] : step.regex->findAll(codePoints))
        addMatch(begin, end);
    }
    size_t last = ranges.empty() ? 0 : std::get<1>(ranges.back());
    if (last < codePoints.size())
      ranges.push_back({last, codePoints.size(), false});
    SplitBehavior behavior = step.behavior;
    if (step.kind == PreTokenizerStep::Kind::Digits)
      behavior = step.individualDigits ? SplitBehavior::Isolated
                                       : SplitBehavior::Contiguous;
    if (step.invert)
      for (auto &range : ranges)
        std::get<2>(range) = !std::get<2>(range);

    // Apply the behavior to the ranges (as `tokenizers` does).
    std::vector<std::pair<size_t, size_t>> kept;
    bool previousMatch = false;
    switch (behavior) {
    case SplitBehavior::Isolated:
      for (auto [begin, end, isMatch] : ranges)
        kept.push_back({begin, end});
      break;
    case SplitBehavior::Removed:
      for (auto [begin, end, isMatch] : ranges)
        if (!isMatch)
          kept.push_back({begin, end});
      break;
    case SplitBehavior::MergedWithPrevious:
      for (auto [begin, end, isMatch] : ranges) {
        if (isMatch && !previousMatch && !kept.empty())
          kept.back().second = end;
        else
          kept.push_back({begin, end});
        previousMatch = isMatch;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) {
        auto [begin, end, isMatch] = *it;
        if (isMatch && !previousMatch && !kept.empty())
          kept.back().first = begin;
        else
          kept.push_back({begin, end});
        previousMatch = isMatch;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case SplitBehavior::Contiguous:
      for (size_t i = 0; i < ranges.size(); ++i) {
        auto [begin, end, isMatch] = ranges[i];
        if (i > 0 && isMatch == previousMatch)
          kept.back().second = end;
        else
          kept.push_back({begin, end});
        previousMatch = isMatch;
      }
      break;
    }
    for (auto [begin, end] : kept)
      if (end > begin)
        result.push_back(
            piece.substr(offsets[begin], offsets[end] - offsets[begin]));
  }
  pieces = std::move(result);
}

void Tokenizer::Impl::bytePairEncode(const std::string &piece,
                                     std::vector<TokenId> &out) const {
  if (piece.empty())
    return;
  if (ignoreMerges) {
    auto it = modelBytesToId.find(piece);
    if (it != modelBytesToId.end()) {
      out.push_back(it->second);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(cacheMutex);
    auto it = cache.find(piece);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // Merge the adjacent pair of lowest rank, leftmost first, until none is
  // left: a heap of candidate pairs over a linked list of symbols, as in
  // `tokenizers`, so long pieces cost O(n log n).
  struct Symbol {
    TokenId id;
    int prev, next; // -1: none
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  for (char byte : piece) {
    TokenId id = byteToId[uint8_t(byte)];
    if (id < 0)
      continue; // a byte missing from the vocab is dropped
    int index = int(symbols.size());
    symbols.push_back({id, index - 1, -1});
    if (index > 0)
      symbols[index - 1].next = index;
  }
  struct Candidate {
    uint32_t rank;
    int left;
    TokenId leftId, rightId, merged;
    bool operator>(const Candidate &other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto addCandidate = [&](int left) {
    if (left < 0 || symbols[left].next < 0)
      return;
    TokenId leftId = symbols[left].id;
    TokenId rightId = symbols[symbols[left].next].id;
    auto it = merges.find(uint64_t(uint32_t(leftId)) << 32 | uint32_t(rightId));
    if (it != merges.end())
      queue.push({it->second.first, left, leftId, rightId, it->second.second});
  };
  for (int i = 0; i + 1 < int(symbols.size()); ++i)
    addCandidate(i);
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol &left = symbols[top.left];
    // Stale when either side has merged since it was queued.
    if (left.id != top.leftId || left.next < 0 ||
        symbols[left.next].id != top.rightId)
      continue;
    int right = left.next;
    left.id = top.merged;
    left.next = symbols[right].next;
    if (left.next >= 0)
      symbols[left.next].prev = top.left;
    symbols[right].id = -1; // dead
    addCandidate(left.prev);
    addCandidate(top.left);
  }
  std::vector<TokenId> merged;
  for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next)
    merged.push_back(symbols[i].id);
  out.insert(out.end(), merged.begin(), merged.end());
  if (piece.size() > 256)
    return; // long runs rarely repeat; keep the cache small
  std::lock_guard<std::mutex> lock(cacheMutex);
  if (cache.size() > 200000)
    cache.clear(); // bounded: a long-running process must not grow forever
  cache.emplace(piece, std::move(merged));
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

namespace {

class Loader {
public:
  Loader(std::string_view sourceName, Tokenizer::Impl &impl)
      : sourceName(sourceName), impl(impl) {}

  std::string error;

  bool fail(const std::string &field, const std::string &why) {
    if (error.empty())
      error = std::string(sourceName) + ": " + field + ": " + why;
    return false;
  }

  bool load(const json::Value &root) {
    if (!root.isObject())
      return fail("(top level)", "expected a JSON object");
    return loadModel(root) && loadAddedTokens(root) &&
           loadNormalizer(root.get("normalizer"), "normalizer") &&
           loadPreTokenizer(root.get("pre_tokenizer"), "pre_tokenizer") &&
           checkByteLevelPreTokenizer() &&
           loadDecoder(root.get("decoder"), "decoder") &&
           loadPostProcessor(root.get("post_processor"), "post_processor") &&
           finish();
  }

  bool loadConfig(const json::Value &config) {
    if (!config.isObject())
      return fail("tokenizer_config.json", "expected a JSON object");
    auto flag = [&](const char *key) {
      const json::Value *value = config.get(key);
      return value && value->isBool() && value->boolean;
    };
    impl.addBos = flag("add_bos_token");
    impl.addEos = flag("add_eos_token");
    auto tokenId = [&](const char *key) -> std::optional<TokenId> {
      const json::Value *value = config.get(key);
      if (value && value->isObject())
        value = value->get("content");
      if (!value || !value->isString())
        return std::nullopt;
      auto it = impl.stringToId.find(value->string);
      if (it == impl.stringToId.end())
        return std::nullopt;
      return it->second;
    };
    impl.bos = tokenId("bos_token");
    impl.eos = tokenId("eos_token");
    if (impl.addBos && !impl.bos)
      return fail("tokenizer_config.json: bos_token",
                  "add_bos_token is set but bos_token is not a known token");
    if (impl.addEos && !impl.eos)
      return fail("tokenizer_config.json: eos_token",
                  "add_eos_token is set but eos_token is not a known token");
    return true;
  }

private:
  std::string_view sourceName;
  Tokenizer::Impl &impl;

  void setToken(TokenId id, const std::string &content) {
    if (size_t(id) >= impl.tokenStrings.size()) {
      impl.tokenStrings.resize(id + 1);
      impl.special.resize(id + 1);
    }
    impl.tokenStrings[id] = content;
    impl.stringToId[content] = id;
  }

  bool loadModel(const json::Value &root) {
    const json::Value *model = root.get("model");
    if (!model || !model->isObject())
      return fail("model", "missing or not an object");
    if (kindName(*model) != "BPE" &&
        !(kindName(*model).empty() && model->get("merges")))
      return fail("model.type", "only \"BPE\" is supported, got \"" +
                                    std::string(kindName(*model)) + "\"");
    if (const json::Value *v = model->get("byte_fallback");
        v && v->isBool() && v->boolean)
      return fail("model.byte_fallback", "byte fallback is not supported");
    for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (const json::Value *v = model->get(key);
          v && v->isString() && !v->string.empty())
        return fail(std::string("model.") + key, "must be empty or null");
    if (const json::Value *v = model->get("dropout");
        v && v->isNumber() && v->number > 0)
      return fail("model.dropout", "BPE dropout is not supported");
    if (const json::Value *v = model->get("ignore_merges"); v && v->isBool())
      impl.ignoreMerges = v->boolean;

    const json::Value *vocab = model->get("vocab");
    if (!vocab || !vocab->isObject())
      return fail("model.vocab", "missing or not an object");
    for (const auto &[token, idValue] : vocab->object) {
      if (!idValue.isNumber() || idValue.number < 0 ||
          idValue.number >= kMaxTokenId ||
          idValue.number != TokenId(idValue.number))
        return fail("model.vocab",
                    "id of \"" + token + "\" is not an integer in [0, 2^24)");
      TokenId id = TokenId(idValue.number);
      setToken(id, token);
      if (auto bytes = byteLevelToBytes(token))
        impl.modelBytesToId[*bytes] = id;
    }
    impl.byteToId.fill(-1);
    for (int byte = 0; byte < 256; ++byte)
      if (auto it = impl.modelBytesToId.find(std::string(1, char(byte)));
          it != impl.modelBytesToId.end())
        impl.byteToId[byte] = it->second;

    const json::Value *merges = model->get("merges");
    if (!merges || !merges->isArray())
      return fail("model.merges", "missing or not an array");
    impl.merges.reserve(merges->array.size());
    for (size_t rank = 0; rank < merges->array.size(); ++rank) {
      const json::Value &merge = merges->array[rank];
      std::string left, right;
      if (merge.isString()) {
        size_t space = merge.string.find(' ');
        if (space == std::string::npos ||
            merge.string.find(' ', space + 1) != std::string::npos)
          return fail("model.merges[" + std::to_string(rank) + "]",
                      "expected \"left right\"");
        left = merge.string.substr(0, space);
        right = merge.string.substr(space + 1);
      } else if (merge.isArray() && merge.array.size() == 2 &&
                 merge.array[0].isString() && merge.array[1].isString()) {
        left = merge.array[0].string;
        right = merge.array[1].string;
      } else {
        return fail("model.merges[" + std::to_string(rank) + "]",
                    "expected a string or a pair of strings");
      }
      auto leftId = impl.stringToId.find(left);
      auto rightId = impl.stringToId.find(right);
      auto mergedId = impl.stringToId.find(left + right);
      if (leftId == impl.stringToId.end() || rightId == impl.stringToId.end() ||
          mergedId == impl.stringToId.end())
        return fail("model.merges[" + std::to_string(rank) + "]",
                    "\"" + left + " " + right +
                        "\" uses a token not in "
                        "model.vocab");
      uint64_t key =
          uint64_t(uint32_t(leftId->second)) << 32 | uint32_t(rightId->second);
      // A repeated pair keeps its first (lowest) rank.
      impl.merges.emplace(key, std::pair(uint32_t(rank), mergedId->second));
    }
    return true;
  }

  bool loadAddedTokens(const json::Value &root) {
    const json::Value *added = root.get("added_tokens");
    if (!added || added->isNull())
      return true;
    if (!added->isArray())
      return fail("added_tokens", "expected an array");
    for (size_t i = 0; i < added->array.size(); ++i) {
      const json::Value &entry = added->array[i];
      std::string field = "added_tokens[" + std::to_string(i) + "]";
      const json::Value *id = entry.get("id");
      const json::Value *content = entry.get("content");
      if (!id || !id->isNumber() || id->number < 0 ||
          id->number >= kMaxTokenId || id->number != TokenId(id->number))
        return fail(field + ".id", "missing or not an integer in [0, 2^24)");
      if (!content || !content->isString() || content->string.empty())
        return fail(field + ".content", "missing or empty");
      for (const char *flag : {"lstrip", "rstrip", "single_word"})
        if (const json::Value *v = entry.get(flag);
            v && v->isBool() && v->boolean)
          return fail(field + "." + flag, "true is not supported");
      auto flag = [&](const char *key, bool fallback) {
        const json::Value *v = entry.get(key);
        return v && v->isBool() ? v->boolean : fallback;
      };
      TokenId tokenId = TokenId(id->number);
      setToken(tokenId, content->string);
      impl.special[tokenId] = flag("special", false);
      (flag("normalized", !flag("special", false)) ? impl.normalizedAddedTokens
                                                   : impl.rawAddedTokens)
          .tokens.push_back({content->string, tokenId});
    }
    return true;
  }

  bool loadNormalizer(const json::Value *normalizer, const std::string &field) {
    if (!normalizer || normalizer->isNull())
      return true;
    std::string_view kind = kindName(*normalizer);
    if (kind == "NFC") {
      impl.normalizeNfc = true;
      return true;
    }
    if (kind == "Sequence") {
      const json::Value *steps = normalizer->get("normalizers");
      if (!steps || !steps->isArray())
        return fail(field + ".normalizers", "missing or not an array");
      for (size_t i = 0; i < steps->array.size(); ++i) {
        if (impl.normalizeNfc)
          return fail(field, "NFC must be the last normalizer");
        if (!loadNormalizer(&steps->array[i],
                            field + ".normalizers[" + std::to_string(i) + "]"))
          return false;
      }
      return true;
    }
    return fail(field + ".type",
                "unsupported normalizer \"" + std::string(kind) + "\"");
  }

  bool loadRegex(const json::Value &pattern, const std::string &field,
                 std::unique_ptr<Regex> &regex) {
    std::string source;
    if (const json::Value *r = pattern.get("Regex"); r && r->isString()) {
      source = r->string;
    } else if (const json::Value *s = pattern.get("String");
               s && s->isString()) {
      // A literal string: escape every non-alphanumeric character.
      for (char c : s->string) {
        if (!std::isalnum(uint8_t(c)) && uint8_t(c) < 0x80)
          source += '\\';
        source += c;
      }
    } else {
      return fail(field, "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    std::string why;
    regex = Regex::compile(source, why);
    if (!regex)
      return fail(field, "bad regex: " + why);
    return true;
  }

  bool loadPreTokenizer(const json::Value *pre, const std::string &field) {
    if (!pre || pre->isNull())
      return true;
    std::string_view kind = kindName(*pre);
    auto flag = [&](const char *key, bool fallback) {
      const json::Value *v = pre->get(key);
      return v && v->isBool() ? v->boolean : fallback;
    };
    PreTokenizerStep step;
    if (kind == "Sequence") {
      const json::Value *steps = pre->get("pretokenizers");
      if (!steps || !steps->isArray())
        return fail(field + ".pretokenizers", "missing or not an array");
      for (size_t i = 0; i < steps->array.size(); ++i)
        if (!loadPreTokenizer(&steps->array[i], field + ".pretokenizers[" +
                                                    std::to_string(i) + "]"))
          return false;
      return true;
    }
    if (kind == "Split") {
      step.kind = PreTokenizerStep::Kind::Split;
      const json::Value *pattern = pre->get("pattern");
      if (!pattern || !pattern->isObject())
        return fail(field + ".pattern", "missing or not an object");
      if (!loadRegex(*pattern, field + ".pattern", step.regex))
        return false;
      const json::Value *behavior = pre->get("behavior");
      std::string name =
          behavior && behavior->isString() ? behavior->string : "";
      if (name == "Removed")
        step.behavior = SplitBehavior::Removed;
      else if (name == "Isolated")
        step.behavior = SplitBehavior::Isolated;
      else if (name == "MergedWithPrevious")
        step.behavior = SplitBehavior::MergedWithPrevious;
      else if (name == "MergedWithNext")
        step.behavior = SplitBehavior::MergedWithNext;
      else if (name == "Contiguous")
        step.behavior = SplitBehavior::Contiguous;
      else
        return fail(field + ".behavior", "unknown behavior \"" + name + "\"");
      step.invert = flag("invert", false);
    } else if (kind == "ByteLevel") {
      step.kind = PreTokenizerStep::Kind::ByteLevel;
      step.addPrefixSpace = flag("add_prefix_space", true);
      if (flag("use_regex", true)) {
        // GPT-2's pattern, which ByteLevel uses when use_regex is set.
        std::string why;
        step.regex = Regex::compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
            "\\s+(?!\\S)|\\s+",
            why);
      }
    } else if (kind == "Digits") {
      step.kind = PreTokenizerStep::Kind::Digits;
      step.individualDigits = flag("individual_digits", false);
    } else {
      return fail(field + ".type",
                  "unsupported pre-tokenizer \"" + std::string(kind) + "\"");
    }
    impl.preTokenizer.push_back(std::move(step));
    return true;
  }

  bool checkByteLevelPreTokenizer() {
    for (const PreTokenizerStep &step : impl.preTokenizer)
      if (step.kind == PreTokenizerStep::Kind::ByteLevel)
        return true;
    return fail("pre_tokenizer",
                "no ByteLevel step; only byte-level BPE is supported");
  }

  bool loadDecoder(const json::Value *decoder, const std::string &field) {
    if (!decoder || decoder->isNull())
      return true;
    std::string_view kind = kindName(*decoder);
    if (kind == "ByteLevel")
      return true;
    if (kind == "Sequence") {
      const json::Value *steps = decoder->get("decoders");
      if (!steps || !steps->isArray())
        return fail(field + ".decoders", "missing or not an array");
      for (size_t i = 0; i < steps->array.size(); ++i)
        if (!loadDecoder(&steps->array[i],
                         field + ".decoders[" + std::to_string(i) + "]"))
          return false;
      return true;
    }
    return fail(field + ".type",
                "unsupported decoder \"" + std::string(kind) + "\"");
  }

  bool loadPostProcessor(const json::Value *post, const std::string &field) {
    if (!post || post->isNull())
      return true;
    std::string_view kind = kindName(*post);
    if (kind == "ByteLevel")
      return true; // only adjusts offsets
    if (kind == "Sequence") {
      const json::Value *steps = post->get("processors");
      if (!steps || !steps->isArray())
        return fail(field + ".processors", "missing or not an array");
      for (size_t i = 0; i < steps->array.size(); ++i)
        if (!loadPostProcessor(&steps->array[i], field + ".processors[" +
                                                     std::to_string(i) + "]"))
          return false;
      return true;
    }
    if (kind != "TemplateProcessing")
      return fail(field + ".type",
                  "unsupported post-processor \"" + std::string(kind) + "\"");
    const json::Value *single = post->get("single");
    const json::Value *specials = post->get("special_tokens");
    if (!single || !single->isArray())
      return fail(field + ".single", "missing or not an array");
    impl.hasTemplate = true;
    bool afterSequence = false;
    for (size_t i = 0; i < single->array.size(); ++i) {
      const json::Value &item = single->array[i];
      std::string itemField = field + ".single[" + std::to_string(i) + "]";
      if (item.get("Sequence")) {
        afterSequence = true;
        continue;
      }
      const json::Value *special = item.get("SpecialToken");
      const json::Value *name = special ? special->get("id") : nullptr;
      if (!name || !name->isString())
        return fail(itemField, "expected Sequence or SpecialToken");
      const json::Value *entry =
          specials ? specials->get(name->string) : nullptr;
      const json::Value *ids = entry ? entry->get("ids") : nullptr;
      if (!ids || !ids->isArray())
        return fail(field + ".special_tokens",
                    "no ids for \"" + name->string + "\"");
      for (const json::Value &id : ids->array) {
        if (!id.isNumber())
          return fail(field + ".special_tokens", "non-numeric id");
        (afterSequence ? impl.templateSuffix : impl.templatePrefix)
            .push_back(TokenId(id.number));
      }
    }
    return true;
  }

  bool finish() {
    for (TokenId id : impl.templatePrefix)
      if (id < 0 || size_t(id) >= impl.tokenStrings.size())
        return fail("post_processor", "template id " + std::to_string(id) +
                                          " is not in the vocabulary");
    for (TokenId id : impl.templateSuffix)
      if (id < 0 || size_t(id) >= impl.tokenStrings.size())
        return fail("post_processor", "template id " + std::to_string(id) +
                                          " is not in the vocabulary");
    impl.rawAddedTokens.finish();
    impl.normalizedAddedTokens.finish();
    impl.tokenBytes.resize(impl.tokenStrings.size());
    impl.special.resize(impl.tokenStrings.size());
    // Like the ByteLevel decoder: a token whose characters are all in the
    // byte-level alphabet decodes to those bytes, any other to its UTF-8.
    for (size_t id = 0; id < impl.tokenStrings.size(); ++id) {
      auto bytes = byteLevelToBytes(impl.tokenStrings[id]);
      impl.tokenBytes[id] = bytes ? *bytes : impl.tokenStrings[id];
    }
    return true;
  }
};

bool readFile(const std::filesystem::path &path, std::string &contents) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream)
    return false;
  std::ostringstream buffer;
  buffer << stream.rdbuf();
  contents = buffer.str();
  return bool(stream) || stream.eof();
}

} // namespace

//===----------------------------------------------------------------------===//
// Public API
//===----------------------------------------------------------------------===//

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer>
Tokenizer::loadFromJson(std::string_view json, std::string_view sourceName,
                        std::string &error, std::string_view configJson) {
  json::Value root;
  std::string why;
  if (!json::parse(json, root, why)) {
    error = std::string(sourceName) + ": invalid JSON: " + why;
    return nullptr;
  }
  auto impl = std::make_unique<Impl>();
  Loader loader(sourceName, *impl);
  if (!loader.load(root)) {
    error = loader.error;
    return nullptr;
  }
  if (!configJson.empty()) {
    json::Value config;
    if (!json::parse(configJson, config, why)) {
      error = std::string(sourceName) +
              ": tokenizer_config.json: invalid JSON: " + why;
      return nullptr;
    }
    if (!loader.loadConfig(config)) {
      error = loader.error;
      return nullptr;
    }
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

std::unique_ptr<Tokenizer> Tokenizer::loadFile(const std::string &path,
                                               std::string &error) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path file = path;
  if (fs::is_directory(file, ec))
    file /= "tokenizer.json";
  std::string json;
  if (!readFile(file, json)) {
    error = file.string() + ": cannot read";
    return nullptr;
  }
  std::string config;
  fs::path configPath = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(configPath, ec) && !readFile(configPath, config)) {
    error = configPath.string() + ": cannot read";
    return nullptr;
  }
  return loadFromJson(json, file.string(), error, config);
}

std::vector<TokenId> Tokenizer::encode(std::string_view text,
                                       bool addSpecialTokens) const {
  std::vector<Piece> pieces;
  if (!text.empty())
    pieces.push_back({std::string(text)});
  impl->splitAddedTokens(impl->rawAddedTokens, pieces);
  if (impl->normalizeNfc)
    for (Piece &piece : pieces)
      if (piece.token < 0)
        piece.text = unicode::toNfc(piece.text);
  impl->splitAddedTokens(impl->normalizedAddedTokens, pieces);

  std::vector<TokenId> ids;
  if (addSpecialTokens) {
    if (impl->hasTemplate)
      ids = impl->templatePrefix;
    else if (impl->addBos)
      ids.push_back(*impl->bos);
  }
  std::vector<std::string> words;
  for (Piece &piece : pieces) {
    if (piece.token >= 0) {
      ids.push_back(piece.token);
      continue;
    }
    words.clear();
    words.push_back(std::move(piece.text));
    for (const PreTokenizerStep &step : impl->preTokenizer)
      impl->preTokenize(step, words);
    for (const std::string &word : words)
      impl->bytePairEncode(word, ids);
  }
  if (addSpecialTokens) {
    if (impl->hasTemplate)
      ids.insert(ids.end(), impl->templateSuffix.begin(),
                 impl->templateSuffix.end());
    else if (impl->addEos)
      ids.push_back(*impl->eos);
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<TokenId> &ids,
                              bool skipSpecialTokens) const {
  std::string bytes;
  for (TokenId id : ids) {
    if (id < 0 || size_t(id) >= impl->tokenBytes.size() ||
        (skipSpecialTokens && impl->special[id]))
      continue;
    bytes += impl->tokenBytes[id];
  }
  return unicode::toValidUtf8(bytes);
}

std::string_view Tokenizer::tokenBytes(TokenId id) const {
  if (id < 0 || size_t(id) >= impl->tokenBytes.size())
    return {};
  return impl->tokenBytes[id];
}

std::string_view Tokenizer::tokenString(TokenId id) const {
  if (id < 0 || size_t(id) >= impl->tokenStrings.size())
    return {};
  return impl->tokenStrings[id];
}

std::optional<TokenId> Tokenizer::tokenToId(std::string_view token) const {
  auto it = impl->stringToId.find(std::string(token));
  if (it == impl->stringToId.end())
    return std::nullopt;
  return it->second;
}

bool Tokenizer::isSpecial(TokenId id) const {
  return id >= 0 && size_t(id) < impl->special.size() && impl->special[id];
}

size_t Tokenizer::vocabSize() const { return impl->tokenStrings.size(); }
std::optional<TokenId> Tokenizer::bosId() const { return impl->bos; }
std::optional<TokenId> Tokenizer::eosId() const { return impl->eos; }

std::string StreamingDecoder::push(TokenId id) {
  if (skipSpecialTokens && tokenizer.isSpecial(id))
    return {};
  pending += tokenizer.tokenBytes(id);
  size_t held = unicode::incompleteUtf8Suffix(pending);
  std::string ready = unicode::toValidUtf8(
      std::string_view(pending).substr(0, pending.size() - held));
  pending.erase(0, pending.size() - held);
  return ready;
}

std::string StreamingDecoder::flush() {
  std::string rest = unicode::toValidUtf8(pending);
  pending.clear();
  return rest;
}

} // namespace moec::tokenizer
