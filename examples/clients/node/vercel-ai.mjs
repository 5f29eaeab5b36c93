// The Vercel AI SDK (`ai` + `@ai-sdk/openai`) streaming text from OpenAI's chat completions, as
// its docs teach: `streamText`, then `textStream`; errors reach `onError`.
//
//   OPENAI_BASE_URL=... node examples/clients/node/vercel-ai.mjs
//
// Prints the streamed text; an error reported to `onError` ends the script with exit 1. Sends
// the request of cassettes/examples/openai-chat-text.msgpack.
import { openai } from "@ai-sdk/openai";
import { streamText } from "ai";

const result = streamText({
  model: openai.chat("gpt-4o-2024-08-06"), // OPENAI_BASE_URL, OPENAI_API_KEY from the env
  prompt: "What's the weather like in SF?",
  timeout: 5000,
  onError({ error }) {
    console.error(`${error.name}: ${error.message}`);
    process.exitCode = 1;
  },
});
for await (const text of result.textStream) {
  process.stdout.write(text);
}
process.stdout.write("\n");
