// The openai Node SDK streaming a chat completion, as its README teaches.
//
//   OPENAI_BASE_URL=... node examples/clients/node/openai.mjs
//
// Prints the streamed text; an error the SDK throws ends the script with exit 1. Sends the
// request of cassettes/examples/openai-chat-text.msgpack.
import OpenAI from "openai";

const client = new OpenAI({ timeout: 5000 }); // OPENAI_BASE_URL, OPENAI_API_KEY from the env

const stream = await client.chat.completions.create({
  model: "gpt-4o-2024-08-06",
  messages: [{ role: "user", content: "What's the weather like in SF?" }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content || "");
}
process.stdout.write("\n");
