import { storyPlatform } from "../support/story.ts";
import { story2 } from "./stories/story-2.ts";

story2(storyPlatform);
