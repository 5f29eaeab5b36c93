// The @anthropic-ai/sdk Node SDK streaming a message with its helper, as its README teaches.
//
//   ANTHROPIC_BASE_URL=... node examples/clients/node/anthropic.mjs
//
// Prints the streamed text; an error the SDK throws ends the script with exit 1. Sends the
// request of cassettes/examples/anthropic-text.msgpack.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ timeout: 5000 }); // ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY from the env

const stream = client.messages
  .stream({
    model: "claude-sonnet-4-5-20250929",
    max_tokens: 32000,
    messages: [
      {
        role: "user",
        content: [{ type: "text", text: "What is 1+1? Answer with just the number." }],
      },
    ],
  })
  .on("text", (text) => {
    process.stdout.write(text);
  });
await stream.finalMessage();
process.stdout.write("\n");
