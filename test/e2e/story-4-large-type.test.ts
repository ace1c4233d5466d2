import { storyPlatform } from "../support/story.ts";
import { story4 } from "./stories/story-4.ts";

story4(storyPlatform);
