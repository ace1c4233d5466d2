import Sentiment from "sentiment";

const analyzer = new Sentiment();

export interface SentimentScore {
  /** Sum of the AFINN-165 word scores (each -5..5). */
  score: number;
  /** Score per word, about -5..5: comparable between short and long texts. */
  comparative: number;
}

/**
 * Scores free-text feedback with the `sentiment` package (AFINN-165, English,
 * with negation such as "not good"). A text without scored words is 0.
 */
export function scoreSentiment(text: string): SentimentScore {
  const result = analyzer.analyze(text);
  return { score: result.score, comparative: Number.isFinite(result.comparative) ? result.comparative : 0 };
}
