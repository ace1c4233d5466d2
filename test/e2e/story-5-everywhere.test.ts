import { storyPlatform } from "../support/story.ts";
import { story5 } from "./stories/story-5.ts";

story5(storyPlatform);
