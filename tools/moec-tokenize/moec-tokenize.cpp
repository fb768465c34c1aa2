//===- moec-tokenize.cpp - Tokenize stdin with a tokenizer.json -----------===//
//
//   moec-tokenize TOKENIZER.json|CKPT_DIR [--add-special] [--decode]
//
// Reads all of stdin byte for byte (no trailing newline stripped) and prints
// the token ids space-separated on one line. With --decode, reads
// whitespace-separated ids and prints their text, with nothing added.
//
//===----------------------------------------------------------------------===//

#include "moec/Tokenizer/Tokenizer.h"

#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

using moec::tokenizer::TokenId;
using moec::tokenizer::Tokenizer;

static int usage() {
  std::fprintf(stderr, "usage: moec-tokenize TOKENIZER.json|CKPT_DIR "
                       "[--add-special] [--decode] < input\n");
  return 2;
}

int main(int argc, char **argv) {
  std::string path;
  bool addSpecial = false, decode = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--add-special")
      addSpecial = true;
    else if (arg == "--decode")
      decode = true;
    else if (arg == "-h" || arg == "--help")
      return usage(), 0;
    else if (!arg.empty() && arg[0] == '-')
      return std::fprintf(stderr, "moec-tokenize: unknown option %s\n",
                          arg.c_str()),
             usage();
    else if (path.empty())
      path = arg;
    else
      return usage();
  }
  if (path.empty())
    return usage();

  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::loadFile(path, error);
  if (!tokenizer) {
    std::fprintf(stderr, "moec-tokenize: %s\n", error.c_str());
    return 1;
  }
  std::ios::sync_with_stdio(false);
  std::string input((std::istreambuf_iterator<char>(std::cin)),
                    std::istreambuf_iterator<char>());

  if (decode) {
    std::vector<TokenId> ids;
    size_t pos = 0;
    while (true) {
      pos = input.find_first_not_of(" \t\r\n", pos);
      if (pos == std::string::npos)
        break;
      size_t end = input.find_first_of(" \t\r\n", pos);
      std::string word = input.substr(pos, end - pos);
      char *rest = nullptr;
      long value = std::strtol(word.c_str(), &rest, 10);
      if (*rest || value < 0 || size_t(value) >= tokenizer->vocabSize()) {
        std::fprintf(stderr,
                     "moec-tokenize: --decode: '%s' is not a token "
                     "id of %s\n",
                     word.c_str(), path.c_str());
        return 1;
      }
      ids.push_back(TokenId(value));
      pos = end;
    }
    std::string text = tokenizer->decode(ids);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }

  std::vector<TokenId> ids = tokenizer->encode(input, addSpecial);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i)
      line += ' ';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
  return 0;
}
