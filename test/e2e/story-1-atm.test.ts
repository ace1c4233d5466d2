import { storyPlatform } from "../support/story.ts";
import { story1 } from "./stories/story-1.ts";

story1(storyPlatform);
