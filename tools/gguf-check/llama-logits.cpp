// tools/gguf-check/llama-logits.cpp: the next-token logits of every position of a sequence of
// token ids, computed by llama.cpp (libllama) from a GGUF file, printed as JSON
// {"logits": [[...], ...]} like `moekit logits`. For models whose GGUF tokenizer is not the
// model's own (the fixtures have none), so the comparison feeds ids rather than text.
//
//   llama-logits MODEL.gguf 1,2,3 [threads]
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf ID,ID,... [threads]\n", argv[0]);
        return 2;
    }
    std::vector<llama_token> ids;
    std::stringstream list(argv[2]);
    for (std::string item; std::getline(list, item, ',');) ids.push_back((llama_token) std::stoi(item));
    const int threads = argc > 3 ? atoi(argv[3]) : 2;

    llama_backend_init();
    llama_model_params model_params = llama_model_default_params();
    model_params.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], model_params);
    if (!model) { fprintf(stderr, "%s: could not load\n", argv[1]); return 1; }

    llama_context_params context_params = llama_context_default_params();
    context_params.n_ctx = ids.size() < 64 ? 64 : (uint32_t) ids.size();
    context_params.n_batch = context_params.n_ctx;
    context_params.n_ubatch = context_params.n_ctx;
    context_params.n_threads = threads;
    context_params.n_threads_batch = threads;
    llama_context * context = llama_init_from_model(model, context_params);
    if (!context) { fprintf(stderr, "could not create a context\n"); return 1; }

    // One batch, every position asking for its logits.
    llama_batch batch = llama_batch_init((int32_t) ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); ++i) {
        batch.token[i] = ids[i];
        batch.pos[i] = (llama_pos) i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = (int32_t) ids.size();
    if (llama_decode(context, batch) != 0) { fprintf(stderr, "llama_decode failed\n"); return 1; }

    const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    printf("{\"logits\": [");
    for (size_t i = 0; i < ids.size(); ++i) {
        const float * row = llama_get_logits_ith(context, (int32_t) i);
        printf(i ? ", [" : "[");
        for (int v = 0; v < vocab; ++v) printf(v ? ", %.9g" : "%.9g", row[v]);
        printf("]");
    }
    printf("]}\n");
    llama_batch_free(batch);
    llama_free(context);
    llama_model_free(model);
    return 0;
}
