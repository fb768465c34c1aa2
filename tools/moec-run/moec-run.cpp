//===- moec-run.cpp - run a .moec artifact from the command line ----------===//
//
// Part of moec. The tiny runner: loads an artifact with the runtime C API,
// prefills the prompt, generates tokens (greedy or sampled) and prints their
// ids; optionally dumps logits as .npy for comparison with transformers'
// `generate(..., output_logits=True)`. Links only the runtime (no LLVM), so
// it is also the smallest example of using the C API.
//
// Errors are one line on stderr and a non-zero exit status.
//
//===----------------------------------------------------------------------===//

#include "moec/Tokenizer/Tokenizer.h"
#include "moec/runtime.h"

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

namespace {

constexpr const char *kUsage =
    "usage: moec-run MODEL.moec (-p TEXT | --prompt-tokens IDS) [options]\n"
    "\n"
    "Runs a .moec artifact: prefills the prompt, generates tokens and prints\n"
    "them on stdout -- the text as it is generated for -p, the ids for\n"
    "--prompt-tokens; prefill and decode speed go to stderr.\n"
    "\n"
    "options:\n"
    "  -p, --prompt TEXT           prompt text, encoded with the tokenizer "
    "the\n"
    "                              artifact embeds (special tokens such as "
    "BOS\n"
    "                              added as its tokenizer_config.json says)\n"
    "  --prompt-tokens IDS         prompt token ids, comma-separated "
    "(3,17,250)\n"
    "  --ids                       print generated ids even for -p\n"
    "  --json                      print one JSON object at the end instead "
    "of\n"
    "                              streaming (ids, text, timings) for "
    "scripts\n"
    "  -n N                        tokens to generate (default 16)\n"
    "  --greedy                    argmax decoding (the default)\n"
    "  --temperature T             sample from softmax(logits / T)\n"
    "  --top-p P                   keep the most probable tokens up to "
    "probability P,\n"
    "                              in (0, 1] (default 1)\n"
    "  --top-k K                   keep the K most probable tokens (0: "
    "all)\n"
    "  --min-p P                   drop tokens below P x the most probable "
    "one's\n"
    "                              probability, in [0, 1] (default 0)\n"
    "  --repeat-penalty R          > 1 discourages tokens already in the "
    "prompt or\n"
    "                              output (default 1: off; greedy too)\n"
    "  --seed S                    random seed for sampling (default 0)\n"
    "  --device DEV                cpu or cuda (default: the device the "
    "artifact\n"
    "                              was compiled for); cuda uses "
    "libcuda.so.1 or\n"
    "                              $MOEC_CUDA_DRIVER, on GPU $MOEC_CUDA_DEVICE "
    "(0)\n"
    "  --threads N                 kernel threads (default: all cores; "
    "ignored on\n"
    "                              cuda)\n"
    "  --max-seq-len N             KV-cache positions (default: the "
    "artifact's)\n"
    "  --ignore-eos                keep generating after an end-of-sequence "
    "token\n"
    "  --dump-logits FILE          float32 [generated, vocab] .npy: row 0 is "
    "the\n"
    "                              prefill's last position, row i decode "
    "step i\n"
    "  --dump-prefill-logits FILE  float32 [prompt, vocab] .npy of every "
    "prompt position\n"
    "  --verify                    check weight and kernel checksums at "
    "load\n"
    "  -h, --help                  this text\n";

[[noreturn]] void fail(const std::string &message) {
  std::fprintf(stderr, "moec-run: error: %s\n", message.c_str());
  std::exit(1);
}

struct Options {
  std::string modelPath;
  std::vector<int64_t> promptTokens;
  bool hasPrompt = false;
  std::string promptText;
  bool hasPromptText = false;
  bool printIds = false;
  bool json = false;
  int64_t count = 16;
  bool greedy = false;
  float temperature = 0.0f;
  bool hasTemperature = false;
  float topP = 1.0f;
  int64_t topK = 0;
  float minP = 0.0f;
  float repeatPenalty = 1.0f;
  uint64_t seed = 0;
  int threads = 0;
  int64_t maxSeqLen = 0;
  bool ignoreEos = false;
  std::string dumpLogits;
  std::string dumpPrefillLogits;
  bool verify = false;
  std::string device; // "": the artifact's
};

template <typename Integer>
Integer parseInteger(std::string_view flag, std::string_view text, Integer min,
                     Integer max) {
  Integer value{};
  auto [end, error] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < min ||
      value > max)
    fail(std::string(flag) + ": expected an integer in [" +
         std::to_string(min) + ", " + std::to_string(max) + "], got '" +
         std::string(text) + "'");
  return value;
}

float parseFloat(std::string_view flag, std::string_view text) {
  float value = 0;
  auto [end, error] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size())
    fail(std::string(flag) + ": expected a number, got '" + std::string(text) +
         "'");
  return value;
}

std::vector<int64_t> parseIds(std::string_view flag, std::string_view text) {
  std::vector<int64_t> ids;
  while (true) {
    size_t comma = text.find(',');
    ids.push_back(
        parseInteger<int64_t>(flag, text.substr(0, comma), 0, INT64_MAX));
    if (comma == std::string_view::npos)
      break;
    text.remove_prefix(comma + 1);
  }
  return ids;
}

Options parseArguments(int argc, char **argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view argument = argv[i];
    if (argument == "-h" || argument == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (argument.empty() || argument[0] != '-' || argument == "-") {
      if (!options.modelPath.empty())
        fail("unexpected argument '" + std::string(argument) +
             "' (one artifact path only)");
      options.modelPath = argument;
      continue;
    }
    // "--flag=value" or "--flag value".
    std::string_view flag = argument, inlineValue;
    bool hasInlineValue = false;
    if (size_t equals = argument.find('='); equals != std::string_view::npos) {
      flag = argument.substr(0, equals);
      inlineValue = argument.substr(equals + 1);
      hasInlineValue = true;
    }
    auto value = [&]() -> std::string_view {
      if (hasInlineValue)
        return inlineValue;
      if (i + 1 >= argc)
        fail(std::string(flag) + ": missing value");
      return argv[++i];
    };
    auto noValue = [&] {
      if (hasInlineValue)
        fail(std::string(flag) + ": takes no value");
    };

    if (flag == "--prompt-tokens") {
      options.promptTokens = parseIds(flag, value());
      options.hasPrompt = true;
    } else if (flag == "-p" || flag == "--prompt") {
      options.promptText = value();
      options.hasPromptText = true;
    } else if (flag == "--ids") {
      noValue();
      options.printIds = true;
    } else if (flag == "--json") {
      noValue();
      options.json = true;
    } else if (flag == "-n") {
      options.count = parseInteger<int64_t>(flag, value(), 0, INT32_MAX);
    } else if (flag == "--greedy") {
      noValue();
      options.greedy = true;
    } else if (flag == "--temperature") {
      options.temperature = parseFloat(flag, value());
      options.hasTemperature = true;
      if (!(options.temperature >= 0.0f) || options.temperature > 1e6f)
        fail("--temperature: expected a number >= 0");
    } else if (flag == "--top-p") {
      options.topP = parseFloat(flag, value());
      if (!(options.topP > 0.0f && options.topP <= 1.0f))
        fail("--top-p: expected a number in (0, 1]");
    } else if (flag == "--top-k") {
      options.topK = parseInteger<int64_t>(flag, value(), 0, INT64_MAX);
    } else if (flag == "--min-p") {
      options.minP = parseFloat(flag, value());
      if (!(options.minP >= 0.0f && options.minP <= 1.0f))
        fail("--min-p: expected a number in [0, 1]");
    } else if (flag == "--repeat-penalty") {
      options.repeatPenalty = parseFloat(flag, value());
      if (!(options.repeatPenalty > 0.0f) || options.repeatPenalty > 1e6f)
        fail("--repeat-penalty: expected a positive number");
    } else if (flag == "--seed") {
      options.seed = parseInteger<uint64_t>(flag, value(), 0, UINT64_MAX);
    } else if (flag == "--device") {
      options.device = value();
      if (options.device != "cpu" && options.device != "cuda")
        fail("--device: expected cpu or cuda, got '" + options.device + "'");
    } else if (flag == "--threads") {
      options.threads = parseInteger<int>(flag, value(), 0, 4096);
    } else if (flag == "--max-seq-len") {
      options.maxSeqLen = parseInteger<int64_t>(flag, value(), 0, INT64_MAX);
    } else if (flag == "--ignore-eos") {
      noValue();
      options.ignoreEos = true;
    } else if (flag == "--dump-logits") {
      options.dumpLogits = value();
    } else if (flag == "--dump-prefill-logits") {
      options.dumpPrefillLogits = value();
    } else if (flag == "--verify") {
      noValue();
      options.verify = true;
    } else {
      fail("unknown option '" + std::string(flag) + "' (see --help)");
    }
  }
  if (options.modelPath.empty())
    fail("missing the artifact path (usage: moec-run MODEL.moec -p TEXT | "
         "--prompt-tokens IDS ...)");
  if (options.hasPrompt == options.hasPromptText)
    fail(options.hasPrompt ? "-p and --prompt-tokens exclude each other"
                           : "missing the prompt: -p TEXT or --prompt-tokens "
                             "IDS");
  if (options.greedy && options.hasTemperature && options.temperature > 0)
    fail("--greedy and --temperature " + std::to_string(options.temperature) +
         " contradict each other");
  if ((options.topP < 1.0f || options.topK > 0 || options.minP > 0.0f) &&
      !(options.temperature > 0))
    fail("--top-p, --top-k and --min-p need --temperature > 0 (greedy "
         "decoding ignores them)");
  return options;
}

/// Fails with the runtime's message when `status` is not MOEC_OK.
void check(moec_status status) {
  if (status != MOEC_OK)
    fail(moec_last_error());
}

/// Writes a float32 [rows, cols] NumPy array (format 1.0) to `path`
/// atomically: a temporary file in the same directory, then a rename.
void writeNpy(const std::string &path, const std::vector<float> &values,
              int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) +
                       "), }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to 64.
  size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string prefix("\x93NUMPY\x01\x00", 8);
  prefix.push_back(static_cast<char>(header.size() & 0xff));
  prefix.push_back(static_cast<char>(header.size() >> 8));

  std::string temp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE *file = std::fopen(temp.c_str(), "wb");
  if (!file)
    fail(path + ": cannot write: " + std::strerror(errno));
  bool ok =
      std::fwrite(prefix.data(), 1, prefix.size(), file) == prefix.size() &&
      std::fwrite(header.data(), 1, header.size(), file) == header.size() &&
      std::fwrite(values.data(), sizeof(float), values.size(), file) ==
          values.size();
  ok = (std::fclose(file) == 0) && ok;
  if (!ok || std::rename(temp.c_str(), path.c_str()) != 0) {
    int error = errno;
    std::remove(temp.c_str());
    fail(path + ": cannot write: " + std::strerror(error));
  }
}

/// `text` as a JSON string (UTF-8 passes through; the decoder already
/// replaced ill-formed sequences).
std::string jsonString(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escape[8];
      std::snprintf(escape, sizeof(escape), "\\u%04x", c);
      out += escape;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  return out;
}

std::string jsonIds(const std::vector<int64_t> &ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i)
      out += ',';
    out += std::to_string(ids[i]);
  }
  out += ']';
  return out;
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

void printSpeed(const char *phase, size_t tokens, double seconds) {
  std::fprintf(stderr, "%s: %zu tokens in %.2f ms (%.1f tok/s)\n", phase,
               tokens, seconds * 1e3,
               seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0);
}

} // namespace

int main(int argc, char **argv) {
  Options options = parseArguments(argc, argv);

  moec_model_options_t modelOptions;
  moec_model_options_initialize(&modelOptions);
  modelOptions.verify_checksums = options.verify;
  if (!options.device.empty())
    modelOptions.device = options.device.c_str();
  moec_model_t *model = nullptr;
  check(moec_model_load(options.modelPath.c_str(), &modelOptions, &model));
  moec_session_t *session = nullptr;
  check(
      moec_session_create(model, options.maxSeqLen, options.threads, &session));
  const int64_t vocab = moec_model_vocab_size(model);

  // Text prompts go through the tokenizer the compiler embedded.
  std::unique_ptr<moec::tokenizer::Tokenizer> tokenizer;
  if (options.hasPromptText) {
    size_t size = 0, configSize = 0;
    const char *json = moec_model_tokenizer_json(model, &size);
    const char *config = moec_model_tokenizer_config_json(model, &configSize);
    if (!json)
      fail(options.modelPath +
           ": the artifact has no tokenizer (its checkpoint had no "
           "tokenizer.json); pass --prompt-tokens");
    std::string error;
    tokenizer = moec::tokenizer::Tokenizer::loadFromJson(
        std::string_view(json, size), options.modelPath, error,
        std::string_view(config ? config : "", configSize));
    if (!tokenizer)
      fail(error);
    for (moec::tokenizer::TokenId id :
         tokenizer->encode(options.promptText, /*addSpecialTokens=*/true))
      options.promptTokens.push_back(id);
    if (options.promptTokens.empty())
      fail("-p: the prompt encodes to no tokens");
  }
  bool printText = tokenizer && !options.printIds && !options.json;
  std::optional<moec::tokenizer::StreamingDecoder> streaming;
  if (printText)
    streaming.emplace(*tokenizer, /*skipSpecialTokens=*/true);

  // Prefill.
  const std::vector<int64_t> &prompt = options.promptTokens;
  std::vector<float> prefillLogits;
  if (!options.dumpPrefillLogits.empty())
    prefillLogits.resize(prompt.size() * vocab);
  auto start = std::chrono::steady_clock::now();
  const auto callStart = start;
  double firstTokenSeconds = 0;
  check(moec_prefill(session, prompt.data(), prompt.size(),
                     prefillLogits.empty() ? nullptr : prefillLogits.data()));
  double prefillSeconds = secondsSince(start);

  // Generation: token i is sampled from the logits of the previous step
  // (the prefill's last position for i = 0), as transformers' generate().
  moec_sampling_t sampling;
  moec_sampling_initialize(&sampling);
  if (options.temperature > 0) {
    sampling.temperature = options.temperature;
    sampling.top_p = options.topP;
    sampling.top_k = options.topK;
    sampling.min_p = options.minP;
  }
  // The repetition penalty sees the prompt and what was generated so far.
  sampling.repeat_penalty = options.repeatPenalty;
  std::vector<int64_t> history(prompt.begin(), prompt.end());
  uint64_t rngState = options.seed;
  std::vector<float> generatedLogits;
  std::vector<int64_t> generated;
  size_t decodeSteps = 0;
  double decodeSeconds = 0;
  bool stoppedAtEos = false;
  const float *logits = moec_session_logits(session);
  for (int64_t step = 0; step < options.count; ++step) {
    if (!options.dumpLogits.empty())
      generatedLogits.insert(generatedLogits.end(), logits, logits + vocab);
    int64_t token;
    sampling.history = history.data();
    sampling.history_size = history.size();
    check(moec_sample(logits, vocab, &sampling, &rngState, &token));
    generated.push_back(token);
    history.push_back(token);
    if (step == 0)
      firstTokenSeconds = secondsSince(callStart);
    if (options.json) {
      // Everything is printed at the end.
    } else if (printText) {
      std::string piece =
          streaming->push(static_cast<moec::tokenizer::TokenId>(token));
      std::fwrite(piece.data(), 1, piece.size(), stdout);
    } else {
      std::printf("%s%lld", step ? " " : "", static_cast<long long>(token));
    }
    std::fflush(stdout);
    if (!options.ignoreEos && moec_model_is_eos(model, token)) {
      stoppedAtEos = true;
      break;
    }
    if (step + 1 == options.count)
      break;
    start = std::chrono::steady_clock::now();
    check(moec_decode(session, token, nullptr));
    decodeSeconds += secondsSince(start);
    ++decodeSteps;
    logits = moec_session_logits(session);
  }
  if (printText) {
    std::string rest = streaming->flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  if (options.json) {
    std::string text = "null";
    if (tokenizer) {
      std::vector<moec::tokenizer::TokenId> ids(generated.begin(),
                                                generated.end());
      text = jsonString(tokenizer->decode(ids, /*skipSpecialTokens=*/true));
    }
    std::printf("{\"prompt_ids\":%s,\"generated_ids\":%s,\"text\":%s,"
                "\"stop\":\"%s\",\"device\":%s,\"prefill_tokens\":%zu,"
                "\"prefill_seconds\":%.6f,\"decode_tokens\":%zu,"
                "\"decode_seconds\":%.6f,\"time_to_first_token_seconds\":%.6f}",
                jsonIds(prompt).c_str(), jsonIds(generated).c_str(),
                text.c_str(), stoppedAtEos ? "eos" : "length",
                jsonString(moec_model_device_name(model)).c_str(),
                prompt.size(), prefillSeconds, decodeSteps, decodeSeconds,
                firstTokenSeconds);
  }
  std::printf("\n");
  std::fflush(stdout); // the output ends before the stats on stderr

  if (!options.dumpPrefillLogits.empty())
    writeNpy(options.dumpPrefillLogits, prefillLogits,
             static_cast<int64_t>(prompt.size()), vocab);
  if (!options.dumpLogits.empty())
    writeNpy(options.dumpLogits, generatedLogits,
             static_cast<int64_t>(generated.size()), vocab);

  if (std::strcmp(moec_model_device(model), "cpu") == 0)
    std::fprintf(stderr, "threads: %d\n", moec_session_threads(session));
  else
    std::fprintf(stderr, "device: %s\n", moec_model_device_name(model));
  printSpeed("prefill", prompt.size(), prefillSeconds);
  printSpeed("decode", decodeSteps, decodeSeconds);
  std::fprintf(
      stderr,
      "summary: %zu prompt tokens at %.1f tok/s, %zu generated at "
      "%.1f tok/s, first token after %.1f ms\n",
      prompt.size(), prefillSeconds > 0 ? prompt.size() / prefillSeconds : 0.0,
      generated.size(), decodeSeconds > 0 ? decodeSteps / decodeSeconds : 0.0,
      firstTokenSeconds * 1e3);
  moec_session_free(session);
  moec_model_free(model);
  return 0;
}
