//===- Regex.cpp - The regex subset of tokenizer.json pre-tokenizers ------===//

#include "Regex.h"

#include "Unicode.h"

#include <type_traits>

namespace moec::tokenizer {

namespace {

// Limits that keep a hostile pattern from exhausting the stack; real
// tokenizer patterns are a few hundred characters and repeat only classes.
constexpr size_t kMaxPatternLength = 4096;
constexpr int kMaxGroupNesting = 100;
constexpr size_t kMaxGroupRepetitions = 256;

/// A non-owning callable reference: continuations are passed down the
/// matcher without allocating.
template <typename Signature> class FunctionRef;
template <typename Result, typename... Args>
class FunctionRef<Result(Args...)> {
public:
  template <typename Callable>
  requires(!std::is_same_v<std::remove_cvref_t<Callable>, FunctionRef>)
      FunctionRef(Callable &&callable)
      : object(const_cast<void *>(static_cast<const void *>(&callable))),
        trampoline([](void *o, Args... args) -> Result {
          return (*static_cast<std::remove_reference_t<Callable> *>(o))(
              args...);
        }) {}
  Result operator()(Args... args) const { return trampoline(object, args...); }

private:
  void *object;
  Result (*trampoline)(void *, Args...);
};

/// A set of code points: ranges, category bits, and \s / \S, maybe negated.
struct CharSet {
  std::vector<std::pair<char32_t, char32_t>> ranges;
  uint8_t categories = 0;
  bool whiteSpace = false, notWhiteSpace = false;
  bool negated = false;
  bool caseInsensitive = false;
  bool any = false; // '.'

  bool containsExact(char32_t c) const {
    if (any)
      return c != '\n';
    for (auto [lo, hi] : ranges)
      if (c >= lo && c <= hi)
        return true;
    if (categories && (unicode::category(c) & categories))
      return true;
    if (whiteSpace && unicode::isWhiteSpace(c))
      return true;
    if (notWhiteSpace && !unicode::isWhiteSpace(c))
      return true;
    return false;
  }
  bool contains(char32_t c) const {
    bool hit = containsExact(c);
    if (!hit && caseInsensitive) {
      // Simple case folding for the letters the patterns use: ASCII, plus
      // the two non-ASCII code points that fold to ASCII (long s, Kelvin).
      char32_t other = c;
      if (c >= 'a' && c <= 'z')
        other = c - 32;
      else if (c >= 'A' && c <= 'Z')
        other = c + 32;
      else if (c == 0x17F)
        other = 's';
      else if (c == 0x212A)
        other = 'k';
      if (other != c)
        hit = containsExact(other) || (other == 's' && containsExact('S')) ||
              (other == 'k' && containsExact('K'));
    }
    return hit != negated;
  }
};

enum class NodeKind {
  Alternation,
  Sequence,
  Set,
  Repeat,
  NegLookahead,
  PosLookahead
};

struct Node {
  NodeKind kind;
  std::vector<int> children;
  int set = -1;
  int min = 0, max = 0; // max < 0: unbounded
};

} // namespace

struct Regex::Program {
  std::vector<Node> nodes;
  std::vector<CharSet> sets;
  int root = -1;
};

namespace {

class Parser {
public:
  Parser(const std::vector<char32_t> &pattern, Regex::Program &program)
      : pattern(pattern), program(program) {}

  bool parse(std::string &error) {
    int root = parseAlternation(false);
    if (root >= 0 && pos != pattern.size())
      fail("unbalanced ')'");
    if (!message.empty()) {
      error = message + " at character " + std::to_string(pos);
      return false;
    }
    program.root = root;
    return true;
  }

private:
  const std::vector<char32_t> &pattern;
  Regex::Program &program;
  size_t pos = 0;
  bool caseInsensitive = false;
  int nesting = 0;
  std::string message;

  int fail(const std::string &why) {
    if (message.empty())
      message = why;
    return -1;
  }
  bool atEnd() const { return pos >= pattern.size(); }
  char32_t peek() const { return atEnd() ? 0 : pattern[pos]; }
  int addNode(Node node) {
    program.nodes.push_back(std::move(node));
    return program.nodes.size() - 1;
  }
  int addSet(CharSet set) {
    set.caseInsensitive = caseInsensitive;
    program.sets.push_back(std::move(set));
    return addNode({NodeKind::Set, {}, int(program.sets.size() - 1)});
  }

  int parseAlternation(bool inGroup) {
    Node alternation{NodeKind::Alternation};
    while (true) {
      int sequence = parseSequence();
      if (sequence < 0)
        return -1;
      alternation.children.push_back(sequence);
      if (peek() != '|')
        break;
      ++pos;
    }
    if (!inGroup && !atEnd())
      return fail("unexpected ')'");
    return alternation.children.size() == 1 ? alternation.children[0]
                                            : addNode(alternation);
  }

  int parseSequence() {
    Node sequence{NodeKind::Sequence};
    while (!atEnd() && peek() != '|' && peek() != ')') {
      int atom = parseAtom();
      if (atom < 0)
        return -1;
      atom = parseQuantifier(atom);
      if (atom < 0)
        return -1;
      sequence.children.push_back(atom);
    }
    return addNode(sequence);
  }

  bool parseNumber(int &value) {
    if (atEnd() || peek() < '0' || peek() > '9')
      return false;
    value = 0;
    while (!atEnd() && peek() >= '0' && peek() <= '9')
      value = value * 10 + int(pattern[pos++] - '0');
    return true;
  }

  int parseQuantifier(int atom) {
    int min, max;
    char32_t c = peek();
    if (c == '?') {
      min = 0, max = 1;
    } else if (c == '*') {
      min = 0, max = -1;
    } else if (c == '+') {
      min = 1, max = -1;
    } else if (c == '{') {
      size_t save = pos++;
      if (!parseNumber(min)) {
        pos = save; // a literal '{'
        return atom;
      }
      max = min;
      if (peek() == ',') {
        ++pos;
        if (!parseNumber(max))
          max = -1;
      }
      if (peek() != '}')
        return fail("malformed {m,n} quantifier");
    } else {
      return atom;
    }
    ++pos;
    if (peek() == '?' || peek() == '+')
      return fail("lazy and possessive quantifiers are not supported");
    return addNode({NodeKind::Repeat, {atom}, -1, min, max});
  }

  int parseAtom() {
    char32_t c = pattern[pos++];
    if (c == '(')
      return parseGroup();
    if (c == '[')
      return parseClass();
    if (c == '.') {
      CharSet set;
      set.any = true;
      return addSet(set);
    }
    if (c == '\\') {
      CharSet set;
      if (!parseEscape(set))
        return -1;
      return addSet(set);
    }
    if (c == '*' || c == '+' || c == '?')
      return fail("quantifier without an operand");
    if (c == '^' || c == '$')
      return fail("anchors are not supported");
    CharSet set;
    set.ranges.push_back({c, c});
    return addSet(set);
  }

  int parseGroup() {
    if (++nesting > kMaxGroupNesting)
      return fail("groups nested too deeply");
    NodeKind kind = NodeKind::Sequence;
    bool savedCase = caseInsensitive;
    if (peek() == '?') {
      ++pos;
      char32_t c = atEnd() ? 0 : pattern[pos++];
      if (c == ':') {
      } else if (c == '!') {
        kind = NodeKind::NegLookahead;
      } else if (c == '=') {
        kind = NodeKind::PosLookahead;
      } else if (c == 'i' && peek() == ':') {
        ++pos;
        caseInsensitive = true;
      } else {
        return fail("unsupported group syntax");
      }
    }
    int inner = parseAlternation(true);
    caseInsensitive = savedCase;
    --nesting;
    if (inner < 0)
      return -1;
    if (peek() != ')')
      return fail("missing ')'");
    ++pos;
    if (kind == NodeKind::Sequence)
      return inner;
    return addNode({kind, {inner}});
  }

  bool parseProperty(CharSet &set, bool negated) {
    if (negated)
      return fail("\\P{...} is not supported") >= 0;
    if (peek() != '{')
      return fail("expected '{' after \\p") >= 0;
    ++pos;
    std::string name;
    while (!atEnd() && peek() != '}')
      name += char(pattern[pos++]);
    if (atEnd())
      return fail("unterminated \\p{...}") >= 0;
    ++pos;
    using namespace unicode;
    if (name == "L" || name == "Letter")
      set.categories |= Letter;
    else if (name == "M" || name == "Mark")
      set.categories |= Mark;
    else if (name == "N" || name == "Number")
      set.categories |= Number;
    else if (name == "P" || name == "Punctuation")
      set.categories |= Punctuation;
    else if (name == "S" || name == "Symbol")
      set.categories |= Symbol;
    else
      return fail("unsupported Unicode property \\p{" + name + "}") >= 0;
    return true;
  }

  // Parses the escape after '\' into `set`.
  bool parseEscape(CharSet &set) {
    if (atEnd())
      return fail("trailing backslash") >= 0;
    char32_t c = pattern[pos++];
    switch (c) {
    case 'p':
    case 'P':
      return parseProperty(set, c == 'P');
    case 's':
      set.whiteSpace = true;
      return true;
    case 'S':
      set.notWhiteSpace = true;
      return true;
    case 'd':
      set.ranges.push_back({'0', '9'});
      return true;
    case 'w':
      set.ranges.push_back({'_', '_'});
      set.categories |= unicode::Letter | unicode::Number | unicode::Mark;
      return true;
    case 'r':
      c = '\r';
      break;
    case 'n':
      c = '\n';
      break;
    case 't':
      c = '\t';
      break;
    case 'f':
      c = '\f';
      break;
    case 'v':
      c = '\v';
      break;
    default:
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9'))
        return fail(std::string("unsupported escape \\") + char(c)) >= 0;
      break; // an escaped punctuation character stands for itself
    }
    set.ranges.push_back({c, c});
    return true;
  }

  int parseClass() {
    CharSet set;
    if (peek() == '^') {
      set.negated = true;
      ++pos;
    }
    bool first = true;
    while (!atEnd() && (peek() != ']' || first)) {
      first = false;
      char32_t lo = pattern[pos++];
      if (lo == '[')
        return fail("nested classes are not supported");
      if (lo == '\\') {
        CharSet escaped;
        if (!parseEscape(escaped))
          return -1;
        if (escaped.ranges.size() != 1 || escaped.categories ||
            escaped.whiteSpace || escaped.notWhiteSpace ||
            escaped.ranges[0].first != escaped.ranges[0].second) {
          // A class escape (\p{..}, \s, \d ...): merge it in.
          set.ranges.insert(set.ranges.end(), escaped.ranges.begin(),
                            escaped.ranges.end());
          set.categories |= escaped.categories;
          set.whiteSpace |= escaped.whiteSpace;
          set.notWhiteSpace |= escaped.notWhiteSpace;
          continue;
        }
        lo = escaped.ranges[0].first;
      }
      char32_t hi = lo;
      if (peek() == '-' && pos + 1 < pattern.size() &&
          pattern[pos + 1] != ']') {
        ++pos;
        hi = pattern[pos++];
        if (hi == '\\') {
          CharSet escaped;
          if (!parseEscape(escaped))
            return -1;
          if (escaped.ranges.size() != 1 || escaped.categories)
            return fail("bad range end in class");
          hi = escaped.ranges[0].first;
        }
        if (hi < lo)
          return fail("reversed range in class");
      }
      set.ranges.push_back({lo, hi});
    }
    if (atEnd())
      return fail("missing ']'");
    ++pos;
    return addSet(set);
  }
};

using Continuation = FunctionRef<bool(size_t)>;

class Matcher {
public:
  Matcher(const Regex::Program &program, const std::vector<char32_t> &text)
      : program(program), text(text) {}

  bool match(int nodeIndex, size_t pos, Continuation next) const {
    const Node &node = program.nodes[nodeIndex];
    switch (node.kind) {
    case NodeKind::Set:
      return pos < text.size() && program.sets[node.set].contains(text[pos]) &&
             next(pos + 1);
    case NodeKind::Sequence:
      return matchSequence(node, 0, pos, next);
    case NodeKind::Alternation:
      for (int child : node.children)
        if (match(child, pos, next))
          return true;
      return false;
    case NodeKind::NegLookahead:
    case NodeKind::PosLookahead: {
      bool found = match(node.children[0], pos, [](size_t) { return true; });
      return found == (node.kind == NodeKind::PosLookahead) && next(pos);
    }
    case NodeKind::Repeat:
      return matchRepeat(node, pos, next);
    }
    return false;
  }

private:
  const Regex::Program &program;
  const std::vector<char32_t> &text;

  bool matchSequence(const Node &node, size_t index, size_t pos,
                     Continuation next) const {
    if (index == node.children.size())
      return next(pos);
    return match(node.children[index], pos, [&](size_t after) {
      return matchSequence(node, index + 1, after, next);
    });
  }

  bool matchRepeat(const Node &node, size_t pos, Continuation next) const {
    const Node &child = program.nodes[node.children[0]];
    size_t max = node.max < 0 ? SIZE_MAX : size_t(node.max);
    if (child.kind == NodeKind::Set) {
      // Greedy over one character class: take the longest run, then give
      // back one at a time (iterative, so long runs need no stack).
      const CharSet &set = program.sets[child.set];
      size_t run = 0;
      while (run < max && pos + run < text.size() &&
             set.contains(text[pos + run]))
        ++run;
      for (size_t count = run + 1; count-- > size_t(node.min);)
        if (next(pos + count))
          return true;
      return false;
    }
    return matchRepeatGeneral(node, 0, pos, max, next);
  }

  bool matchRepeatGeneral(const Node &node, size_t count, size_t pos,
                          size_t max, Continuation next) const {
    // Each iteration of a repeated group nests a call: give up (no match)
    // before the stack runs out.
    if (count > kMaxGroupRepetitions)
      return false;
    if (count < max) {
      bool matched = match(node.children[0], pos, [&](size_t after) {
        // An empty iteration would loop forever; stop repeating there.
        if (after == pos)
          return false;
        return matchRepeatGeneral(node, count + 1, after, max, next);
      });
      if (matched)
        return true;
    }
    return count >= size_t(node.min) && next(pos);
  }
};

} // namespace

Regex::Regex(std::unique_ptr<Program> program) : program(std::move(program)) {}
Regex::~Regex() = default;

std::unique_ptr<Regex> Regex::compile(std::string_view pattern,
                                      std::string &error) {
  std::vector<char32_t> codePoints;
  std::vector<uint32_t> offsets;
  unicode::decodeUtf8(pattern, codePoints, offsets);
  if (codePoints.size() > kMaxPatternLength) {
    error = "pattern longer than " + std::to_string(kMaxPatternLength) +
            " characters";
    return nullptr;
  }
  auto program = std::make_unique<Program>();
  if (!Parser(codePoints, *program).parse(error))
    return nullptr;
  return std::unique_ptr<Regex>(new Regex(std::move(program)));
}

std::vector<std::pair<size_t, size_t>>
Regex::findAll(const std::vector<char32_t> &text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  Matcher matcher(*program, text);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = 0;
    bool found = false;
    size_t at = start;
    for (; at < text.size(); ++at) {
      found = matcher.match(program->root, at, [&](size_t after) {
        end = after;
        return true;
      });
      if (found)
        break;
    }
    if (!found)
      break;
    if (end == at) { // empty match: skip a character, as find_iter does
      start = at + 1;
      continue;
    }
    matches.push_back({at, end});
    start = end;
  }
  return matches;
}

} // namespace moec::tokenizer
