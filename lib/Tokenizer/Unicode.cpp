//===- Unicode.cpp - Unicode data and UTF-8 for the tokenizer -------------===//

#include "Unicode.h"

#include <algorithm>
#include <array>

namespace moec::tokenizer::unicode {

namespace {

struct CategoryRange {
  char32_t first, last;
  uint8_t mask;
};
struct CombiningClass {
  char32_t codePoint;
  uint8_t combiningClass;
};
struct Decomposition {
  char32_t codePoint, first, second;
};
struct Composition {
  char32_t first, second, composite;
};

#include "UnicodeTables.inc"

uint8_t lookupCategory(char32_t cp) {
  auto *end = std::end(kCategoryRanges);
  auto *it = std::upper_bound(
      std::begin(kCategoryRanges), end, cp,
      [](char32_t c, const CategoryRange &r) { return c < r.first; });
  if (it == std::begin(kCategoryRanges))
    return 0;
  --it;
  return cp <= it->last ? it->mask : 0;
}

// Latin-1 is most of the text; skip the binary search there.
const std::array<uint8_t, 256> kLatin1Categories = [] {
  std::array<uint8_t, 256> table{};
  for (char32_t cp = 0; cp < 256; ++cp)
    table[cp] = lookupCategory(cp);
  return table;
}();

uint8_t combiningClass(char32_t cp) {
  if (cp < 0x300)
    return 0;
  auto *it = std::lower_bound(
      std::begin(kCombiningClasses), std::end(kCombiningClasses), cp,
      [](const CombiningClass &c, char32_t v) { return c.codePoint < v; });
  return it != std::end(kCombiningClasses) && it->codePoint == cp
             ? it->combiningClass
             : 0;
}

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161,
                   kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28,
                   kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose(char32_t cp, std::vector<char32_t> &out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    char32_t index = cp - kSBase;
    out.push_back(kLBase + index / kNCount);
    out.push_back(kVBase + (index % kNCount) / kTCount);
    if (index % kTCount)
      out.push_back(kTBase + index % kTCount);
    return;
  }
  auto *it = std::lower_bound(
      std::begin(kDecompositions), std::end(kDecompositions), cp,
      [](const Decomposition &d, char32_t v) { return d.codePoint < v; });
  if (cp < 0xC0 || it == std::end(kDecompositions) || it->codePoint != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second)
    decompose(it->second, out);
}

char32_t compose(char32_t first, char32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase &&
      second < kVBase + kVCount)
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  if (first >= kSBase && first < kSBase + kSCount &&
      (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount)
    return first + (second - kTBase);
  auto *it = std::lower_bound(std::begin(kCompositions),
                              std::end(kCompositions), std::pair(first, second),
                              [](const Composition &c, auto key) {
                                return std::pair(c.first, c.second) < key;
                              });
  if (it != std::end(kCompositions) && it->first == first &&
      it->second == second)
    return it->composite;
  return 0;
}

// Length of a well-formed sequence that starts with `lead`, 0 if none can.
int sequenceLength(uint8_t lead) {
  if (lead < 0x80)
    return 1;
  if (lead >= 0xC2 && lead <= 0xDF)
    return 2;
  if (lead >= 0xE0 && lead <= 0xEF)
    return 3;
  if (lead >= 0xF0 && lead <= 0xF4)
    return 4;
  return 0;
}

// Allowed range of the second byte (Unicode Table 3-7); later ones 80..BF.
std::pair<uint8_t, uint8_t> secondByteRange(uint8_t lead) {
  switch (lead) {
  case 0xE0:
    return {0xA0, 0xBF};
  case 0xED:
    return {0x80, 0x9F};
  case 0xF0:
    return {0x90, 0xBF};
  case 0xF4:
    return {0x80, 0x8F};
  default:
    return {0x80, 0xBF};
  }
}

// Decodes one sequence at `pos`: returns bytes consumed (>= 1) and sets `cp`
// (U+FFFD when ill-formed; `complete` false when the text ended mid-way).
size_t decodeOne(std::string_view text, size_t pos, char32_t &cp,
                 bool &complete) {
  complete = true;
  uint8_t lead = text[pos];
  int length = sequenceLength(lead);
  if (length == 1) {
    cp = lead;
    return 1;
  }
  cp = 0xFFFD;
  if (length == 0)
    return 1;
  char32_t value = lead & (0xFF >> (length + 1));
  for (int i = 1; i < length; ++i) {
    if (pos + i >= text.size()) {
      complete = false;
      return i;
    }
    uint8_t byte = text[pos + i];
    auto [lo, hi] = i == 1 ? secondByteRange(lead)
                           : std::pair<uint8_t, uint8_t>{0x80, 0xBF};
    if (byte < lo || byte > hi)
      return i;
    value = (value << 6) | (byte & 0x3F);
  }
  cp = value;
  return length;
}

} // namespace

uint8_t category(char32_t cp) {
  return cp < 256 ? kLatin1Categories[cp] : lookupCategory(cp);
}

bool isWhiteSpace(char32_t cp) {
  if (cp < 0x80)
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

void appendUtf8(std::string &out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

void decodeUtf8(std::string_view text, std::vector<char32_t> &codePoints,
                std::vector<uint32_t> &byteOffsets) {
  codePoints.clear();
  byteOffsets.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    byteOffsets.push_back(pos);
    uint8_t byte = text[pos];
    if (byte < 0x80) {
      codePoints.push_back(byte);
      ++pos;
      continue;
    }
    char32_t cp;
    bool complete;
    pos += decodeOne(text, pos, cp, complete);
    codePoints.push_back(cp);
  }
  byteOffsets.push_back(text.size());
}

std::string toValidUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    char32_t cp;
    bool complete;
    size_t used = decodeOne(bytes, pos, cp, complete);
    if (cp == 0xFFFD && !(used == 3 && bytes.substr(pos, 3) == "\xEF\xBF\xBD"))
      appendUtf8(out, cp);
    else
      out.append(bytes.substr(pos, used));
    pos += used;
  }
  return out;
}

size_t incompleteUtf8Suffix(std::string_view bytes) {
  size_t size = bytes.size();
  for (size_t back = 1; back <= 3 && back <= size; ++back) {
    uint8_t byte = bytes[size - back];
    if ((byte & 0xC0) == 0x80)
      continue; // continuation byte: keep looking for the lead
    char32_t cp;
    bool complete;
    size_t used = decodeOne(bytes, size - back, cp, complete);
    return !complete && used == back ? back : 0;
  }
  return 0;
}

namespace {
std::string toNfcWellFormed(std::string_view text);
} // namespace

std::string toNfc(std::string_view text) {
  // Normalize each well-formed run; ill-formed bytes pass through unchanged
  // so byte-level encoding still sees them.
  std::string out;
  size_t runStart = 0, pos = 0;
  while (pos < text.size()) {
    if (uint8_t(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    char32_t cp;
    bool complete;
    size_t used = decodeOne(text, pos, cp, complete);
    bool illFormed = cp == 0xFFFD && text.substr(pos, used) != "\xEF\xBF\xBD";
    if (illFormed) {
      out += toNfcWellFormed(text.substr(runStart, pos - runStart));
      out.append(text.substr(pos, used));
      runStart = pos + used;
    }
    pos += used;
  }
  if (runStart == 0)
    return toNfcWellFormed(text);
  out += toNfcWellFormed(text.substr(runStart));
  return out;
}

namespace {
std::string toNfcWellFormed(std::string_view text) {
  // Nothing below U+0300 composes with anything, so such text is already NFC.
  std::vector<char32_t> codePoints;
  std::vector<uint32_t> offsets;
  decodeUtf8(text, codePoints, offsets);
  if (std::all_of(codePoints.begin(), codePoints.end(),
                  [](char32_t c) { return c < 0x300; }))
    return std::string(text);

  std::vector<char32_t> decomposed;
  decomposed.reserve(codePoints.size());
  for (char32_t cp : codePoints)
    decompose(cp, decomposed);

  // Canonical ordering: stable-sort each run of non-starters by class.
  for (size_t i = 0; i < decomposed.size();) {
    if (!combiningClass(decomposed[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < decomposed.size() && combiningClass(decomposed[end]))
      ++end;
    std::stable_sort(decomposed.begin() + i, decomposed.begin() + end,
                     [](char32_t a, char32_t b) {
                       return combiningClass(a) < combiningClass(b);
                     });
    i = end;
  }

  // Canonical composition: each character joins the last starter unless a
  // character in between blocks it.
  std::vector<char32_t> composed;
  composed.reserve(decomposed.size());
  long starter = -1;
  int lastClass = 0;
  for (char32_t cp : decomposed) {
    int cls = combiningClass(cp);
    if (starter >= 0) {
      bool adjacent = composed.size() == size_t(starter) + 1;
      bool blocked = !adjacent && (lastClass == 0 || lastClass >= cls);
      if (!blocked) {
        if (char32_t composite = compose(composed[starter], cp)) {
          composed[starter] = composite;
          continue;
        }
      }
    }
    if (cls == 0)
      starter = composed.size();
    composed.push_back(cp);
    lastClass = cls;
  }
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : composed)
    appendUtf8(out, cp);
  return out;
}
} // namespace

} // namespace moec::tokenizer::unicode
